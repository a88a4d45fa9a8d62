"""Typed configuration: defaults < TOML file < CAPTION_AGENT_* environment < explicit arguments.

Nested fields use ``__`` in environment names, e.g. ``CAPTION_AGENT_REFINER__BACKEND=vllm``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from caption_agent.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageLimits(_Section):
    # Upper bounds: a limit is a promise of bounded work, so it cannot be switched off by a huge number.
    max_bytes: int = Field(
        40 * 1024 * 1024, ge=1, le=1024**3, description="Largest accepted file, in bytes (at most 1 GiB)."
    )
    max_pixels: int = Field(
        50_000_000,
        ge=1,
        le=178_000_000,
        description="Largest accepted width*height (decompression bombs); at most 178 MP, below the size Pillow "
        "refuses to open.",
    )
    max_jpeg_scans: int = Field(
        100,
        ge=1,
        le=1000,
        description="Most scans in a JPEG (a baseline photo has 1, a progressive one about 10): each scan is a full "
        "decoding pass, so a file repeating one scan thousands of times takes minutes to decode.",
    )
    max_metadata_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="Most bytes of JPEG metadata (APPn segments: EXIF, XMP, ICC; comments); photos carry under "
        "1 MB, and reading tens of MB of EXIF costs seconds.",
    )
    min_side: int = Field(8, ge=1, le=4096, description="Smallest accepted width or height, in pixels.")
    max_aspect_ratio: float = Field(
        20.0,
        ge=1,
        le=10_000,
        description="Longest side / shortest side; a thinner strip is refused (banners and panoramas are under 10:1).",
    )
    working_side: int = Field(
        1024,
        ge=224,
        le=8192,
        description="Longest side of the working copy that every "
        "stage (screening, drafting, OCR, CLIP, VLM uploads) uses; bounds their memory.",
    )


class ServerSettings(_Section):
    """How a backend talks to its server (vLLM's OpenAI-compatible API): one model, reused by every server-backed
    backend (the vllm drafter and the vllm refiner)."""

    base_url: str | None = Field(None, description="OpenAI-compatible URL, e.g. http://127.0.0.1:8000/v1.")
    api_key: str | None = Field(None, description="API key of the server, if it needs one.")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Per-request timeout, in seconds (at most an hour).")
    max_retries: int = Field(3, ge=0, le=10, description="Retries on connection errors, 429 and 5xx.")
    max_concurrency: int = Field(16, ge=1, le=512, description="Requests in flight at once.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        """Refused when read, not at the first request: ``notaurl`` would otherwise be probed as host None."""
        import urllib.parse

        if url is None:
            return None
        try:
            parts = urllib.parse.urlsplit(url.strip())
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0-65535
        except ValueError as exc:
            raise ValueError(f"{url!r} is not a valid URL ({exc}); pass e.g. http://127.0.0.1:8000/v1") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL with a host; pass e.g. http://127.0.0.1:8000/v1")
        return url


class LiteDrafterSettings(_Section):
    """The offline tagger (EfficientNet-Lite0 labels + colours)."""

    batch_size: int = Field(
        4,
        ge=1,
        le=256,
        description="Images per forward pass. CPU-only backend; measured (benchmarks/bench_drafter.py, 2 cores): "
        "batches of 1-4 are fastest, 16-32 lose 30-50% (cache-bound), 4 also holds up under CPU contention.",
    )
    ocr: bool = Field(False, description="Read text in the image (needs the [ocr] extra).")
    runtime: Literal["onnx", "torch"] = Field(
        "onnx",
        description="onnx: onnxruntime, exported once from the bundled weights into the model cache (same "
        "probabilities as torch within 1e-4; no torch import once built); torch: the state dict on torch.",
    )
    hedge_threshold: float = Field(
        0.5, gt=0, le=1, description="Probability mass a WordNet category needs before a draft names it."
    )
    hedge_breadth: float = Field(
        0.4, ge=0, le=1, description="Extra mass a broad category needs: + breadth * log(classes under it) / log(1000)."
    )
    context_threshold: float = Field(
        0.3, gt=0, le=1, description="Mass an object or garment needs to be named beside people."
    )


class VLMDecodingSettings(_Section):
    """What every VLM drafter asks of its model."""

    model: str | None = Field(
        None,
        description="A VLM preset name (`caption-agent models list`, e.g. florence-2-base), a hub id or a folder "
        "(transformers), or the served model name (vllm).",
    )
    prompt: str | None = Field(None, description="Text prompt for the VLM (e.g. 'a photo of' for BLIP).")
    prompt_style: str | None = Field(
        None,
        description="Which of a preset's task prompts every request uses (a style preset name); unset: each "
        "request's own style's prompt (the preset's default prompt when it has none for that style).",
    )
    decoding: Literal["beam", "sample"] = Field("beam", description="How the VLM makes N candidates.")
    temperature: float = Field(0.8, gt=0, le=2, description="Sampling temperature when decoding = 'sample'.")
    max_new_tokens: int = Field(40, ge=4, le=512, description="Token budget of one draft.")


class TransformersDrafterSettings(VLMDecodingSettings):
    """A transformers image-to-text / image-text-to-text model in this process."""

    batch_size: int = Field(16, ge=1, le=256, description="Images per generate() call.")
    device: str | None = Field(None, description="torch device; auto (cuda if present) when unset.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weights dtype: auto = bf16 (or fp16) on CUDA, fp32 on CPU."
    )
    trust_remote_code: bool = Field(False, description="Run code shipped in the model repo.")
    cache_dir: str | None = Field(
        None, description="Hugging Face cache folder for preset downloads; unset: the hub's default (HF_HUB_CACHE)."
    )


class VLLMDrafterSettings(VLMDecodingSettings, ServerSettings):
    """A VLM served by vLLM (images sent as data URLs of the working copy)."""


# Keys that moved into per-backend sections: old name -> where it lives now (refused with this message).
_MOVED: dict[str, dict[str, str | None]] = {
    "drafter": {
        "model": "transformers.model or drafter.vllm.model",
        "prompt": "transformers.prompt or drafter.vllm.prompt",
        "decoding": "transformers.decoding or drafter.vllm.decoding",
        "temperature": "transformers.temperature or drafter.vllm.temperature",
        "max_new_tokens": "transformers.max_new_tokens or drafter.vllm.max_new_tokens",
        "device": "transformers.device",
        "dtype": "transformers.dtype",
        "trust_remote_code": "transformers.trust_remote_code",
        "base_url": "vllm.base_url",
        "api_key": "vllm.api_key",
        "timeout_s": "vllm.timeout_s",
        "max_retries": "vllm.max_retries",
        "max_concurrency": "vllm.max_concurrency",
        "ocr": "lite.ocr",
        "batch_size": "lite.batch_size or drafter.transformers.batch_size",
        "image_max_side": None,
    },
    "refiner": {
        "model": "local.model or refiner.vllm.model",
        "max_new_tokens": "local.max_new_tokens or refiner.vllm.max_new_tokens",
        "temperature": "local.temperature or refiner.vllm.temperature",
        "base_url": "vllm.base_url",
        "api_key": "vllm.api_key",
        "timeout_s": "vllm.timeout_s",
        "max_retries": "vllm.max_retries",
        "max_concurrency": "vllm.max_concurrency",
    },
}


def _refuse_moved(section: str, data: Any) -> Any:
    """Old flat keys are refused with the name of their new home (TOML key and environment variable)."""
    if not isinstance(data, dict):
        return data
    for key in data:
        if key in _MOVED[section]:
            new = _MOVED[section][key]
            if new is None:
                raise ValueError(
                    f"{section}.{key} was replaced by images.working_side (one working size for every "
                    "stage); set that instead"
                )
            first = new.split(" ")[0]
            env = f"CAPTION_AGENT_{section.upper()}__{first.replace('.', '__').upper()}"
            raise ValueError(
                f"{section}.{key} moved into the backend's own section: set {section}.{new} (environment: {env})"
            )
    return data


class _StageSettings(_Section):
    """A stage with a backend registry: each built-in backend has its own section (a field named after it)."""

    _stage: ClassVar[str]
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of backends registered by other packages, by backend name (validated by the backend).",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        return _refuse_moved(cls._stage, data)

    def section(self, name: str) -> Any:
        """The settings section of backend ``name`` (its raw ``options`` for a backend registered elsewhere)."""
        field = type(self).model_fields.get(name)
        if field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            return getattr(self, name)
        return self.options.get(name, {})


class DrafterSettings(_StageSettings):
    """Stage 1: which drafter, how many drafts, and each backend's own settings (a key for another backend is
    refused, not ignored)."""

    _stage = "drafter"
    backend: str = Field("lite", description="Drafter registry name: lite | transformers | vllm.")
    n_candidates: int = Field(5, ge=1, le=32, description="Drafts per image.")
    fallback_to_lite: bool = Field(True, description="Use the lite drafter when the configured VLM fails to load.")
    lite: LiteDrafterSettings = Field(default_factory=LiteDrafterSettings)
    transformers: TransformersDrafterSettings = Field(default_factory=TransformersDrafterSettings)
    vllm: VLLMDrafterSettings = Field(default_factory=VLLMDrafterSettings)


class RankerSettings(_Section):
    clip_model: str | None = Field(None, description="CLIP model id or path; enables CLIP-S ranking.")
    drafter_weight: float = Field(0.5, ge=0, le=1, description="Weight of the drafter's own score in confidence.")


class RetrievalSettings(_Section):
    catalog_dir: Path | None = Field(None, description="Embedded Chroma folder; no grounding when unset.")
    chroma_url: str | None = Field(
        None, description="http://host:port of a `chroma run` server (instead of the folder)."
    )
    collection: str = Field("products", min_length=3, max_length=512, description="Chroma collection name.")
    embedder: str | None = Field(
        None, description="sentence-transformers id or path; bundled all-MiniLM-L6-v2 if unset."
    )
    embedder_runtime: Literal["auto", "onnx", "onnx-int8", "torch"] = Field(
        "auto",
        description="auto: onnxruntime on CPU when the model allows (same vectors as torch), else torch; "
        "onnx-int8: faster, vectors drift (a collection built with it accepts only it).",
    )
    top_k: int = Field(2, ge=1, le=50, description="Products whose facts (5-8 each) are passed to the refiner.")
    min_score: float = Field(0.2, ge=0, le=1, description="Minimum relevance of a fact.")
    relevance_gate: bool = Field(
        True,
        description="Use a product found by similarity alone only if its category maps to the draft's hedged "
        "WordNet category (or an ancestor) and its score clears gate_min_score; a sku the caller gives is trusted.",
    )
    gate_min_score: float = Field(
        0.21,
        ge=0,
        le=1,
        description="Similarity a product must reach to pass the relevance gate; calibrated with "
        "benchmarks/bench_relevance.py (middle of the best-F0.5 plateau 0.00-0.41 on the tune photos).",
    )


class LocalRefinerSettings(_Section):
    """The refine prompt run in this process with transformers (bundled SmolLM2-135M-Instruct by default)."""

    model: str | None = Field(None, description="Model id or path; the bundled SmolLM2 GGUF when unset.")
    max_new_tokens: int = Field(96, ge=8, le=2048, description="Generation budget.")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature (0 = greedy).")


class VLLMRefinerSettings(ServerSettings):
    """An LLM served by vLLM, through LangChain's ChatOpenAI with JSON-schema output."""

    model: str | None = Field(None, description="Served model name; the server's first model when unset.")
    max_new_tokens: int = Field(96, ge=8, le=2048, description="Generation budget.")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature (0 = greedy).")


class TemplateRefinerSettings(_Section):
    """The deterministic refiner: per-preset, per-language templates (data files) filled with the draft's subject
    and the catalog's own (localized) facts; it states nothing else."""

    templates_dir: Path | None = Field(
        None, description="Folder of compose templates (PRESET.yaml) overriding the bundled prompts/compose ones."
    )
    lexicon: Path | None = Field(
        None, description="Hand-written lexicon YAML replacing the bundled prompts/compose/lexicon.yaml."
    )


class RefinerSettings(_StageSettings):
    """Stage 2: the refiner chain (the primary backend, then its fallbacks in order) and each backend's own
    settings."""

    _stage = "refiner"
    backend: str = Field(
        "template",
        description="Primary refiner, a registry name: template (the offline default, chosen by measurement: "
        "examples/eval/REFINER_CHOICE.md) | local | vllm, or none (the moderated draft only; fallbacks unused).",
    )
    fallbacks: list[str] = Field(
        default_factory=lambda: ["template", "draft"],
        max_length=8,
        description="Tried in order when the primary's answer is unusable or fails moderation after its "
        "retries: refiner names, then optionally 'draft' (the moderated ranked draft, always last). Without "
        "'draft' an item no link could write goes to review. A name equal to the primary is skipped.",
    )
    on_unavailable: Literal["next", "error"] = Field(
        "next",
        description="When a link's server cannot be reached: next (the next link writes; provenance says why) | "
        "error (the item fails, retryable).",
    )
    local: LocalRefinerSettings = Field(default_factory=LocalRefinerSettings)
    vllm: VLLMRefinerSettings = Field(default_factory=VLLMRefinerSettings)
    template: TemplateRefinerSettings = Field(default_factory=TemplateRefinerSettings)

    @model_validator(mode="after")
    def _chain(self) -> Self:
        names = self.fallbacks
        if len(set(names)) != len(names):
            raise ValueError(f"refiner.fallbacks repeats a name: {names}")
        if "none" in names:
            raise ValueError("refiner.fallbacks cannot hold 'none'; leave the list empty for no fallback")
        if "draft" in names and names[-1] != "draft":
            raise ValueError("'draft' must be the last of refiner.fallbacks (nothing can follow the raw draft)")
        return self

    def chain(self) -> list[str]:
        """The refiner links in order (without 'draft'): the primary, then the fallbacks that differ from it."""
        if self.backend == "none":  # no refiner at all: the moderated draft, as before chains existed
            return []
        return [self.backend] + [n for n in self.fallbacks if n not in ("draft", self.backend)]


class PolicySettings(_Section):
    file: Path | None = Field(None, description="Policy YAML; the bundled default when unset.")
    max_regenerations: int = Field(1, ge=0, le=5, description="Refiner retries with feedback.")
    review_queue: Path | None = Field(None, description="JSONL file collecting results sent to review.")


MAX_CONFIG_BYTES = 1024 * 1024  # a TOML config is a few KB; a larger file is the wrong file


def _env_hint(exc: SettingsError, prefix: str) -> str:
    """The environment variable a pydantic-settings parse error is about, when it names its field."""
    import re

    found = re.search(r'field "([^"]+)"', str(exc))
    return f" (environment variable {prefix}{found.group(1).upper()})" if found else ""


class TomlSettings(BaseSettings):
    """Settings read from explicit arguments, then the environment, then an optional TOML file (``load``)."""

    _what: ClassVar[str] = "configuration"
    _fix: ClassVar[str | None] = None
    _toml_path: ClassVar[Path | None] = None  # set by ``load`` for the duration of one construction

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[Any, ...]:
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
        if path is not None and Path(path).stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{cls._what} file {str(path)!r} is over {MAX_CONFIG_BYTES} bytes; is it the right file?")
        cls._toml_path = Path(path) if path is not None else None
        try:
            return cls(**overrides)
        except ValidationError as exc:  # every bad key, as "where: what"
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors(include_url=False)
            )
            raise ConfigError(f"invalid {cls._what}: {problems}.", fix=cls._fix) from exc
        except SettingsError as exc:  # an environment value that is not the JSON its field needs
            raise ConfigError(
                f"invalid {cls._what}: {exc}{_env_hint(exc, str(cls.model_config.get('env_prefix', '')))}.",
                fix="write nested settings of CAPTION_AGENT_* variables as valid JSON (e.g. "
                "CAPTION_AGENT_DRAFTER='{\"backend\": \"lite\"}'), or one key per variable with '__' "
                "(CAPTION_AGENT_DRAFTER__BACKEND=lite).",
            ) from None
        except RecursionError:
            raise ConfigError(
                f"{cls._what} file {str(path)!r} nests tables or arrays deeper than it can be read.",
                fix="flatten the TOML file; settings are at most a few levels deep.",
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{cls._what} file {str(path)!r} is not valid TOML: {exc}.") from None
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


def load_for_cli(
    path: str | Path | None,
    *,
    refiner: str | None = None,
    drafter: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    catalog: Path | None = None,
    vlm: str | None = None,
    vlm_url: str | None = None,
) -> AgentConfig:
    """The one validated path for command-line overrides: each flag becomes the nested key it stands for and is
    validated with the file and the environment, like any other setting. ``--model`` and ``--base-url`` belong
    to the refiner that will run (``--refiner``, else the configured one); ``--vlm`` and ``--vlm-url`` to the drafter
    (a VLM served at ``vlm_url`` by vLLM, else run in process by transformers)."""
    over: dict[str, Any] = {}
    if refiner is not None:
        over.setdefault("refiner", {})["backend"] = refiner
    if model is not None or base_url is not None:
        backend = refiner or AgentConfig.load(path).refiner.backend
        if base_url is not None and backend != "vllm":
            raise ConfigError(
                f"--base-url is a setting of the vllm refiner, but the refiner is {backend!r}.",
                fix="add --refiner vllm, or leave --base-url out.",
            )
        if backend not in ("local", "vllm"):
            raise ConfigError(
                f"--model and --base-url set the local or vllm refiner, but the refiner is {backend!r}.",
                fix="add --refiner local or --refiner vllm, or set the backend's options in the config file.",
            )
        section = over.setdefault("refiner", {}).setdefault(backend, {})
        section.update({k: v for k, v in (("model", model), ("base_url", base_url)) if v is not None})
    if drafter is not None:
        over["drafter"] = {"backend": drafter}
    if vlm is not None or vlm_url is not None:
        backend = "vllm" if vlm_url is not None else "transformers"
        section = {k: v for k, v in (("model", vlm), ("base_url", vlm_url)) if v is not None}
        over["drafter"] = {"backend": backend, backend: section}
    if catalog is not None:
        over["retrieval"] = {"catalog_dir": catalog}
    return AgentConfig.load(path, **over)
