"""CatalogStore: writer lock, embedder pinning, opening errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from caption_agent.config import RetrievalSettings
from caption_agent.embedders import get_embedder
from caption_agent.errors import CatalogError, EmbedderMismatchError, StoreLockedError
from caption_agent.retrieval.product import Product
from caption_agent.retrieval.store import LOCK_NAME, CatalogStore, CollectionMissingError, StoreUnavailableError


def test_second_writer_in_another_process_is_refused(settings: RetrievalSettings) -> None:
    folder = Path(settings.catalog_dir)
    folder.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time, filelock
        lock = filelock.FileLock({str(folder / LOCK_NAME)!r}); lock.acquire()
        print("held", flush=True); sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match="another process is writing") as info:
            CatalogStore.open(settings, writer=True)  # fails before any embedder or client is loaded
        assert "chroma run" in str(info.value)  # the fix names the server mode
    finally:
        holder.communicate("\n", timeout=10)


def test_reader_of_missing_catalog_is_told_to_ingest(tmp_path: Path) -> None:
    with pytest.raises(CollectionMissingError, match="does not exist.*caption-agent ingest"):
        CatalogStore.open(RetrievalSettings(catalog_dir=tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()  # a reader creates nothing
    with pytest.raises(CatalogError, match="no catalog configured"):
        CatalogStore.open(RetrievalSettings())


def test_dead_server_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailableError, match="cannot reach the Chroma server.*Fix: start the server"):
        CatalogStore.open(RetrievalSettings(chroma_url="http://127.0.0.1:9"))
    with pytest.raises(CatalogError, match="not an http"):
        CatalogStore.open(RetrievalSettings(chroma_url="ftp://example"))


@pytest.mark.slow
def test_lock_lifecycle_in_process(settings: RetrievalSettings, minilm: object) -> None:
    with CatalogStore.open(settings, minilm, writer=True) as store:
        assert store.is_writer
        with pytest.raises(StoreLockedError):
            CatalogStore.open(settings, minilm, writer=True)
        reader = CatalogStore.open(settings, minilm)  # readers take no lock
        assert reader.count() == 0 and not reader.is_writer
        with pytest.raises(CatalogError, match="read-only"):
            reader.delete(["x"])
    with CatalogStore.open(settings, minilm, writer=True) as again:  # released by close()
        assert again.describe()["embedder"] == minilm.model_id


@pytest.mark.slow
def test_embedder_is_pinned_and_a_mismatch_names_both(
    settings: RetrievalSettings, minilm: object, tiny_model_dir: Path
) -> None:
    with CatalogStore.open(settings, minilm, writer=True) as store:
        product = Product(sku="S-1", title="Espresso cup")
        store.upsert([product], minilm.encode([product.embedding_text()]))
    tiny = get_embedder(str(tiny_model_dir))
    assert tiny.dim == 32
    with pytest.raises(EmbedderMismatchError) as info:
        CatalogStore.open(settings, tiny, writer=True)
    msg = str(info.value)
    assert minilm.model_id in msg and "384-d" in msg and str(tiny_model_dir) in msg and "32-d" in msg
    # The lock was released on failure, and nothing was written: the collection is as before.
    with CatalogStore.open(settings, minilm, writer=True) as store:
        assert store.count() == 1 and store.get(["S-1"]) == [product]
    # With no embedder configured, opening loads the pinned one.
    assert CatalogStore.open(settings).embedder is minilm
    # A configured embedder that differs from the pin is refused too.
    with pytest.raises(EmbedderMismatchError):
        CatalogStore.open(settings.model_copy(update={"embedder": str(tiny_model_dir)}))


@pytest.mark.slow
def test_other_embedder_in_its_own_collection(settings: RetrievalSettings, tiny_model_dir: Path) -> None:
    tiny_settings = settings.model_copy(update={"collection": "tiny_products", "embedder": str(tiny_model_dir)})
    with CatalogStore.open(tiny_settings, writer=True) as store:
        product = Product(sku="S-9", title="Felt cat bed")
        store.upsert([product], store.embedder.encode([product.embedding_text()]))
        with pytest.raises(EmbedderMismatchError, match="dimension 384"):
            store.upsert([product], np.zeros((1, 384), dtype=np.float32))
        found = store.query(store.embedder.encode(["cat bed"])[0], 1)
    assert [m.product.sku for m in found] == ["S-9"] and 0.0 <= found[0].score <= 1.0
    reopened = CatalogStore.open(tiny_settings.model_copy(update={"embedder": None}))
    assert reopened.embedder.model_id == str(tiny_model_dir)


@pytest.mark.slow
def test_foreign_collection_is_refused(settings: RetrievalSettings, minilm: object) -> None:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(str(settings.catalog_dir), Settings(anonymized_telemetry=False))
    client.create_collection("someone_else", embedding_function=None)
    with pytest.raises(CatalogError, match="not created by caption-agent"):
        CatalogStore.open(settings.model_copy(update={"collection": "someone_else"}), minilm, writer=True)
