"""Settings of each stage and backend (drafters, refiners, rankers, retrieval, policy, servers) and the image
limits: the sections ``AgentConfig`` (agent/config.py) is made of. Strict (``extra="forbid"``): users write them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageLimits(Section):
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


class ServerSettings(Section):
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


class LiteDrafterSettings(Section):
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


class VLMDecodingSettings(Section):
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


class LocalRefinerSettings(Section):
    """The refine prompt run in this process with transformers (bundled SmolLM2-135M-Instruct by default)."""

    model: str | None = Field(None, description="Model id or path; the bundled SmolLM2 GGUF when unset.")
    max_new_tokens: int = Field(96, ge=8, le=2048, description="Generation budget.")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature (0 = greedy).")


class VLLMRefinerSettings(ServerSettings):
    """An LLM served by vLLM, through LangChain's ChatOpenAI with JSON-schema output."""

    model: str | None = Field(None, description="Served model name; the server's first model when unset.")
    max_new_tokens: int = Field(96, ge=8, le=2048, description="Generation budget.")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature (0 = greedy).")


class TemplateRefinerSettings(Section):
    """The deterministic refiner: per-preset, per-language templates (data files) filled with the draft's subject
    and the catalog's own (localized) facts; it states nothing else."""

    templates_dir: Path | None = Field(
        None, description="Folder of compose templates (PRESET.yaml) overriding the bundled prompts/compose ones."
    )
    lexicon: Path | None = Field(
        None, description="Hand-written lexicon YAML replacing the bundled prompts/compose/lexicon.yaml."
    )


class _Registered(Section):
    """A stage whose backend is chosen by name from a registry; backends registered by other packages read their
    own keys from ``options``."""

    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of backends registered by other packages, by backend name (validated by the backend).",
    )


class RankerSettings(_Registered):
    """Stage 1b: how the drafts are ordered and the best one's confidence computed."""

    backend: str | None = Field(
        None,
        description="Ranker registry name: consensus | clip, or one registered by another package; unset: clip "
        "when clip_model is set, else consensus.",
    )
    clip_model: str | None = Field(None, description="CLIP model id or path; enables CLIP-S ranking.")
    drafter_weight: float = Field(0.5, ge=0, le=1, description="Weight of the drafter's own score in confidence.")

    @model_validator(mode="after")
    def _clip_needs_model(self) -> Self:
        if self.backend == "clip" and not self.clip_model:
            raise ValueError("ranker.backend 'clip' needs ranker.clip_model (a CLIP hub id or folder); set it")
        if self.backend == "consensus" and self.clip_model:
            raise ValueError(
                "ranker.clip_model is set but ranker.backend is 'consensus', which does not use it; unset one of them"
            )
        return self

    def selected(self) -> str:
        """The ranker backend in use: ``backend``, else clip when a CLIP model is set, else consensus."""
        return self.backend or ("clip" if self.clip_model else "consensus")


class RetrievalSettings(_Registered):
    """Stage 1c: the product catalog (retriever backend), its embedder and the relevance gate."""

    backend: str = Field(
        "chroma",
        description="Retriever registry name: chroma (embedded folder or server), or one registered by another "
        "package.",
    )
    catalog_dir: Path | None = Field(None, description="Embedded Chroma folder; no grounding when unset.")
    chroma_url: str | None = Field(
        None, description="http://host:port of a `chroma run` server (instead of the folder)."
    )
    collection: str = Field("products", min_length=3, max_length=512, description="Chroma collection name.")
    embedder_backend: str = Field(
        "sentence-transformers",
        description="Embedder registry name: sentence-transformers (run on the embedder_runtime), or one "
        "registered by another package.",
    )
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


class PolicySettings(_Registered):
    """Stage 3: the policy engine that moderates images, inputs and captions."""

    backend: str = Field(
        "rules",
        description="Policy engine registry name: rules (the rules of a YAML policy file), or one registered by "
        "another package.",
    )
    file: Path | None = Field(None, description="Policy YAML; the bundled default when unset.")
    max_regenerations: int = Field(1, ge=0, le=5, description="Refiner retries with feedback.")
    review_queue: Path | None = Field(None, description="JSONL file collecting results sent to review.")
