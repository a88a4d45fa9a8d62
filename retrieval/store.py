"""CatalogStore: the product collection in Chroma, embedded (PersistentClient) or server (HttpClient).

Both modes run the same code; only ``open`` differs. Embedded writers hold ``<dir>/.writer.lock`` because
Chroma is not process-safe on one folder. The embedder's id and dimension are pinned in the collection
metadata when it is created, and any other embedder is refused. The id names the vectors, not the runtime:
the ONNX fp32 and torch runtimes of one model give the same vectors and share an id; ONNX int8 gives other
vectors and pins ``<id>+onnx-int8``, which only the int8 runtime matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

import numpy as np

from caption_agent._extras import require
from caption_agent._iter import chunked
from caption_agent.config import RetrievalSettings
from caption_agent.embedders import BUNDLED_MINILM_ID, INT8_SUFFIX, Embedder, get_embedder
from caption_agent.errors import CatalogError, EmbedderMismatchError, StoreLockedError
from caption_agent.retrieval.product import TEXT_VERSION, Product

__all__ = ["CatalogStore", "StoreUnavailableError", "Match", "SCHEMA_TAG"]

SCHEMA_TAG = "caption-agent/products@1"
LOCK_NAME = ".writer.lock"


class StoreUnavailableError(CatalogError):
    fix = (
        "start the server (`chroma run --path DIR --host 127.0.0.1 --port P`) and check `retrieval.chroma_url`, "
        "or unset it to use the embedded folder."
    )


class CollectionMissingError(CatalogError):
    fix = "ingest a catalog first: `caption-agent ingest FILE --catalog DIR` (same --collection / --chroma-url)."


@dataclass(frozen=True)
class Match:
    """One product returned by a query, with its relevance in [0, 1] (cosine similarity, clipped)."""

    product: Product
    score: float
    document: str


class CatalogStore:
    """A product collection. Use ``CatalogStore.open(settings, ...)``; close it (or use ``with``) to free the lock."""

    def __init__(
        self,
        client: Any,
        collection: Any,
        embedder: Embedder,
        *,
        location: str,
        lock: Any = None,
        server: bool = False,
        writer: bool = False,
    ) -> None:
        self._client = client
        self._collection = collection
        self.embedder = embedder
        self.location = location
        self.server = server
        self._lock = lock
        self._writer = writer

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls, settings: RetrievalSettings, embedder: Embedder | None = None, *, writer: bool = False
    ) -> CatalogStore:
        """Open (and, for a writer, create) the collection named in ``settings``.

        Embedded when ``settings.chroma_url`` is None, else a Chroma server. With no embedder given and none
        configured, the embedder pinned in an existing collection is loaded.
        """
        lock = None
        if settings.chroma_url is None:
            if settings.catalog_dir is None:
                raise CatalogError(
                    "no catalog configured.",
                    fix="set `retrieval.catalog_dir` (--catalog DIR) or `retrieval.chroma_url`.",
                )
            folder = Path(settings.catalog_dir)
            if not writer and not folder.is_dir():
                raise CollectionMissingError(f"catalog folder {str(folder)!r} does not exist.")
            if writer:
                lock = _take_writer_lock(folder)
        try:
            client, location = _connect(settings)
            collection, pinned = _find_collection(client, settings.collection)
            if collection is None and not writer:
                raise CollectionMissingError(f"collection {settings.collection!r} not found in {location}.")
            if embedder is None:
                use_pinned = settings.embedder is None and pinned is not None
                embedder = _load_embedder(
                    _model_arg(pinned[0]) if pinned is not None and use_pinned else settings.embedder,
                    settings.embedder_runtime,
                )
            if collection is None:
                collection = client.get_or_create_collection(
                    settings.collection,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata=_pin(embedder),
                    embedding_function=None,
                )
                pinned = _read_pin(collection.metadata, settings.collection)
            _check_pin(pinned, embedder, settings.collection, location)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(
            client,
            collection,
            embedder,
            location=location,
            lock=lock,
            server=settings.chroma_url is not None,
            writer=writer,
        )

    def close(self) -> None:
        """Release the writer lock (embedded mode). Safe to call twice."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._writer = False

    def __enter__(self) -> CatalogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return str(self._collection.name)

    @property
    def is_writer(self) -> bool:
        return self._writer

    # ------------------------------------------------------------------ reading
    def count(self) -> int:
        return int(self._collection.count())

    def content_hashes(self, skus: Sequence[str]) -> dict[str, str]:
        """sku -> stored content hash, for the skus that exist."""
        out: dict[str, str] = {}
        for chunk in chunked(list(skus), 2000):
            got = self._collection.get(ids=chunk, include=["metadatas"])
            for sku, meta in zip(got["ids"], got["metadatas"] or []):
                out[sku] = str((meta or {}).get("content_hash", ""))
        return out

    def get(self, skus: Sequence[str]) -> list[Product]:
        got = self._collection.get(ids=list(skus), include=["metadatas"])
        return [Product.from_metadata(m) for m in got["metadatas"] or []]

    def iter_skus(self, page: int = 20000) -> Iterator[str]:
        """Every sku in the collection, paged so 10^7 ids never sit in one response."""
        offset = 0
        while True:
            got = self._collection.get(include=[], limit=page, offset=offset)
            ids = got["ids"]
            yield from ids
            if len(ids) < page:
                return
            offset += len(ids)

    def query(self, vector: np.ndarray, k: int, where: dict[str, Any] | None = None) -> list[Match]:
        """Nearest products to ``vector`` among those matching ``where``, best first."""
        return self.query_many(np.asarray(vector).reshape(1, -1), k, where)[0]

    def query_many(self, vectors: np.ndarray, k: int, where: dict[str, Any] | None = None) -> list[list[Match]]:
        """One ranked list per row of ``vectors``, all under the same ``where``, in one Chroma call."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if not len(vectors):
            return []
        res = self._collection.query(
            query_embeddings=vectors, n_results=k, where=where, include=["metadatas", "documents", "distances"]
        )
        return [
            [Match(Product.from_metadata(meta), _score(dist), doc or "") for meta, doc, dist in zip(*row)]
            for row in zip(res["metadatas"], res["documents"], res["distances"])
        ]

    def lookup(self, skus: Sequence[str], where: dict[str, Any] | None = None) -> list[Match]:
        """Products by id, optionally also matching ``where``, unranked (score 1.0): the caller named them."""
        got = self._collection.get(ids=list(skus), where=where, include=["metadatas", "documents"])
        return [Match(Product.from_metadata(m), 1.0, d or "") for m, d in zip(got["metadatas"], got["documents"])]

    # ------------------------------------------------------------------ writing
    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> None:
        """Insert or replace ``products`` (keyed by sku) with their precomputed vectors."""
        self._require_writer()
        if len(products) != len(vectors):
            raise ValueError(f"{len(products)} products but {len(vectors)} vectors")
        if len(products) and vectors.shape[1] != self.embedder.dim:
            raise EmbedderMismatchError(
                f"vectors have dimension {vectors.shape[1]}, the collection {self.embedder.dim}."
            )
        step = max(1, min(5000, int(self._client.get_max_batch_size())))
        for lo in range(0, len(products), step):
            part = products[lo : lo + step]
            self._collection.upsert(
                ids=[p.sku for p in part],
                embeddings=vectors[lo : lo + step],
                metadatas=[p.to_metadata() for p in part],
                documents=[p.embedding_text() for p in part],
            )

    def delete(self, skus: Sequence[str]) -> None:
        self._require_writer()
        for chunk in chunked(list(skus), 5000):
            self._collection.delete(ids=chunk)

    def _require_writer(self) -> None:
        if not self.is_writer:
            raise CatalogError(
                "this store was opened read-only.", fix="open it with CatalogStore.open(settings, writer=True)."
            )

    def describe(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "collection": self.name,
            "count": self.count(),
            "embedder": self.embedder.model_id,
            "dim": self.embedder.dim,
        }


# ---------------------------------------------------------------------- helpers
def _take_writer_lock(folder: Path) -> Any:
    import filelock

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    # timeout=0: fail at once. flock is per open file, so a second writer in this process is refused too.
    lock = filelock.FileLock(str(path), timeout=0, is_singleton=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreLockedError(
            f"another process is writing to the catalog {str(folder)!r} (lock {str(path)!r} is held)."
        ) from None
    return lock


def _connect(settings: RetrievalSettings) -> tuple[Any, str]:
    chromadb = require("chromadb", "lite", "The Chroma catalog store")
    from chromadb.config import Settings

    chroma_settings = Settings(anonymized_telemetry=False)
    if settings.chroma_url is None:
        folder = str(settings.catalog_dir)
        return chromadb.PersistentClient(path=folder, settings=chroma_settings), folder
    url = urlsplit(settings.chroma_url if "://" in settings.chroma_url else f"http://{settings.chroma_url}")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CatalogError(
            f"chroma_url {settings.chroma_url!r} is not an http(s)://host:port URL.",
            fix="use e.g. http://127.0.0.1:8000.",
        )
    port = url.port or (443 if url.scheme == "https" else 8000)
    try:
        client = chromadb.HttpClient(host=url.hostname, port=port, ssl=url.scheme == "https", settings=chroma_settings)
        client.heartbeat()
    except Exception as exc:  # noqa: BLE001 - httpx / chroma raise several types for a dead server
        raise StoreUnavailableError(f"cannot reach the Chroma server at {settings.chroma_url}: {exc}") from exc
    return client, f"{url.scheme}://{url.hostname}:{port}"


def _find_collection(client: Any, name: str) -> tuple[Any, tuple[str, int] | None]:
    from chromadb.errors import NotFoundError

    try:
        collection = client.get_collection(name, embedding_function=None)
    except NotFoundError:
        return None, None
    except ValueError as exc:  # older servers report a missing collection as ValueError
        if "does not exist" in str(exc):
            return None, None
        raise
    return collection, _read_pin(collection.metadata, name)


def _pin(embedder: Embedder) -> dict[str, Any]:
    return {
        "embedder": embedder.model_id,
        "embedder_dim": int(embedder.dim),
        "schema": SCHEMA_TAG,
        "text_version": TEXT_VERSION,
    }


def _read_pin(metadata: dict[str, Any] | None, name: str) -> tuple[str, int]:
    meta = metadata or {}
    if meta.get("schema") != SCHEMA_TAG or "embedder" not in meta:
        raise CatalogError(
            f"collection {name!r} was not created by caption-agent (metadata: {json.dumps(meta)[:200]}).",
            fix="choose another collection name with --collection, or delete that collection.",
        )
    return str(meta["embedder"]), int(meta["embedder_dim"])


def _check_pin(pinned: tuple[str, int] | None, embedder: Embedder, name: str, location: str) -> None:
    if pinned is None:
        return
    model_id, dim = pinned
    if model_id != embedder.model_id or dim != embedder.dim:
        message = (
            f"collection {name!r} at {location} was built with embedder {model_id!r} ({dim}-d), "
            f"but this process uses {embedder.model_id!r} ({embedder.dim}-d)."
        )
        if model_id.removesuffix(INT8_SUFFIX) == embedder.model_id.removesuffix(INT8_SUFFIX):
            # Same model, other precision: int8 vectors drift from fp32 ones (mean cosine ~0.95), so mixing them
            # would silently change which products are found.
            runtime = "onnx-int8" if model_id.endswith(INT8_SUFFIX) else "onnx or torch (fp32)"
            raise EmbedderMismatchError(
                message + " int8 and fp32 vectors of one model are not interchangeable.",
                fix=f"set `retrieval.embedder_runtime` to {runtime} for this collection, or re-ingest it.",
            )
        raise EmbedderMismatchError(message)


def _load_embedder(model: str | None, runtime: str = "auto") -> Embedder:
    try:
        return get_embedder(model, runtime=runtime)
    except CatalogError:
        raise
    except Exception as exc:  # noqa: BLE001 - sentence-transformers raises OSError, ValueError, HF errors...
        raise CatalogError(
            f"cannot load the embedder {model or BUNDLED_MINILM_ID!r}: {exc}",
            fix="give a sentence-transformers model folder or a hub id available offline "
            "(`retrieval.embedder` / --embedder).",
        ) from exc


def _model_arg(model_id: str) -> str | None:
    """The get_embedder argument that reloads a pinned model id (None = the bundled MiniLM; an int8 pin keeps its
    suffix, which selects the int8 runtime)."""
    return None if model_id == BUNDLED_MINILM_ID else model_id


def _score(distance: float) -> float:
    # Chroma's cosine space returns 1 - cos; vectors are normalised, so this is the similarity, clipped.
    return float(min(1.0, max(0.0, 1.0 - float(distance))))
