"""Typed configuration: defaults < TOML file < CAPTION_AGENT_* environment < explicit arguments.

Nested fields use ``__`` in environment names, e.g. ``CAPTION_AGENT_REFINER__BACKEND=vllm``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from caption_agent.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageLimits(_Section):
    max_bytes: int = Field(40 * 1024 * 1024, ge=1, description="Largest accepted file, in bytes.")
    max_pixels: int = Field(50_000_000, ge=1, description="Largest accepted width*height (decompression bombs).")
    min_side: int = Field(8, ge=1, description="Smallest accepted width or height, in pixels.")
    max_aspect_ratio: float = Field(20.0, ge=1, le=10_000, description="Longest side / shortest side; a "
                                    "thinner strip is refused (banners and panoramas are under 10:1).")
    working_side: int = Field(1024, ge=224, le=8192, description="Longest side of the working copy that every "
                              "stage (screening, drafting, OCR, CLIP, VLM uploads) uses; bounds their memory.")


class DrafterSettings(_Section):
    backend: str = Field("lite", description="Drafter registry name: lite | transformers | vllm.")
    n_candidates: int = Field(5, ge=1, le=32, description="Drafts per image.")
    batch_size: int = Field(16, ge=1, le=256, description="Images per forward pass.")
    ocr: bool = Field(False, description="Read text in the image (lite drafter; needs the [ocr] extra).")
    model: str | None = Field(None, description="Model id or path for the transformers/vllm drafters.")
    base_url: str | None = Field(None, description="vLLM server URL for the vllm drafter.")
    prompt: str | None = Field(None, description="Text prompt for the VLM (e.g. 'a photo of' for BLIP).")
    device: str | None = Field(None, description="torch device; auto (cuda if present) when unset.")
    fallback_to_lite: bool = Field(True, description="Use the lite drafter when the configured VLM fails to load.")
    decoding: Literal["beam", "sample"] = Field("beam", description="How a VLM drafter makes N candidates.")
    temperature: float = Field(0.8, gt=0, le=2, description="Sampling temperature when decoding = 'sample'.")
    max_new_tokens: int = Field(40, ge=4, le=512, description="Token budget of one VLM draft.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="transformers drafter weights: auto = bf16 (or fp16) on CUDA, fp32 on CPU.")
    trust_remote_code: bool = Field(False, description="Run code shipped in the model repo (transformers drafter).")
    api_key: str | None = Field(None, description="API key of the vLLM server, if it needs one.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout of the vllm drafter.")
    max_retries: int = Field(3, ge=0, le=10, description="vllm drafter retries on connection errors, 429 and 5xx.")
    max_concurrency: int = Field(16, ge=1, le=512, description="vllm drafter requests in flight at once.")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "image_max_side" in data:
            raise ValueError("drafter.image_max_side was replaced by images.working_side (one working size for "
                             "every stage); set that instead")
        return data


class RankerSettings(_Section):
    clip_model: str | None = Field(None, description="CLIP model id or path; enables CLIP-S ranking.")
    drafter_weight: float = Field(0.5, ge=0, le=1, description="Weight of the drafter's own score in confidence.")


class RetrievalSettings(_Section):
    catalog_dir: Path | None = Field(None, description="Embedded Chroma folder; no grounding when unset.")
    chroma_url: str | None = Field(None, description="http://host:port of a `chroma run` server (instead of the "
                                                     "folder).")
    collection: str = Field("products", min_length=3, max_length=512, description="Chroma collection name.")
    embedder: str | None = Field(None, description="sentence-transformers id or path; bundled all-MiniLM-L6-v2 if "
                                                   "unset.")
    top_k: int = Field(2, ge=1, le=50, description="Products whose facts (5-8 each) are passed to the refiner.")
    min_score: float = Field(0.2, ge=0, le=1, description="Minimum relevance of a fact.")


class RefinerSettings(_Section):
    backend: str = Field("local", description="Refiner registry name: local | vllm | none.")
    model: str | None = Field(None, description="Model id/path (local) or served model name (vllm).")
    base_url: str | None = Field(None, description="vLLM OpenAI-compatible URL, e.g. http://127.0.0.1:8000/v1.")
    api_key: str | None = Field(None, description="API key for the vLLM server, if it needs one.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries on connection errors and 5xx.")
    max_concurrency: int = Field(16, ge=1, le=512, description="Requests in flight at once.")
    max_new_tokens: int = Field(96, ge=8, le=2048, description="Generation budget.")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature (0 = greedy).")


class PolicySettings(_Section):
    file: Path | None = Field(None, description="Policy YAML; the bundled default when unset.")
    max_regenerations: int = Field(1, ge=0, le=5, description="Refiner retries with feedback.")
    review_queue: Path | None = Field(None, description="JSONL file collecting results sent to review.")


class TomlSettings(BaseSettings):
    """Settings read from explicit arguments, then the environment, then an optional TOML file (``load``)."""

    _what: ClassVar[str] = "configuration"
    _fix: ClassVar[str | None] = None
    _toml_path: ClassVar[Path | None] = None  # set by ``load`` for the duration of one construction

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[Any, ...]:
        toml = cls._toml_path
        sources: list[Any] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Self:
        """Load from an optional TOML file, the environment, then ``overrides``."""
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{cls._what} file {str(path)!r} does not exist.")
        cls._toml_path = Path(path) if path is not None else None
        try:
            return cls(**overrides)
        except Exception as exc:  # pydantic's message lists every bad key
            raise ConfigError(f"invalid {cls._what}: {exc}", fix=cls._fix) from exc
        finally:
            cls._toml_path = None


class AgentConfig(TomlSettings):
    """All settings of a CaptionAgent."""

    model_config = SettingsConfigDict(env_prefix="CAPTION_AGENT_", env_nested_delimiter="__", extra="forbid")

    drafter: DrafterSettings = Field(default_factory=DrafterSettings)
    ranker: RankerSettings = Field(default_factory=RankerSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    refiner: RefinerSettings = Field(default_factory=RefinerSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    images: ImageLimits = Field(default_factory=ImageLimits)
    prompts_dir: Path | None = Field(None, description="Folder of user presets overriding the bundled ones.")
    default_style: str = Field("alt_text", description="Preset used when a request names none.")
    default_locale: str = Field("en-US", description="Locale used when a request names none.")

