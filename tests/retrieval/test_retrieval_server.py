"""The same store code against a real `chroma run` server on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from caption_agent.config import RetrievalSettings
from caption_agent.embedders import get_embedder
from caption_agent.errors import EmbedderMismatchError
from caption_agent.retrieval import CatalogStore, Retriever, ingest_file
from caption_agent.schemas import ProductHint

pytestmark = [pytest.mark.chroma_server, pytest.mark.slow]


def test_ingest_and_retrieve_through_the_server(
    chroma_server: str, minilm: Any, small_rows: list, write_jsonl: Callable[..., Path]
) -> None:
    settings = RetrievalSettings(chroma_url=chroma_server, collection="server_products")
    path = write_jsonl(small_rows)
    with CatalogStore.open(settings, minilm, writer=True) as store:
        assert store.server and store.is_writer and store.location == chroma_server
        assert ingest_file(path, store).added == 4
        # A second writer is fine in server mode: the server serialises writes.
        with CatalogStore.open(settings, minilm, writer=True) as other:
            small_rows[0]["description"] = "A small espresso cup with a saucer."
            assert ingest_file(write_jsonl(small_rows), other).updated == 1
    reader = CatalogStore.open(settings)  # pinned embedder, read-only
    assert reader.embedder is minilm and reader.count() == 4 and not reader.is_writer
    (match,) = Retriever(reader, top_k=1).search("a black espresso cup", ProductHint(brand="Hollowell"))
    assert match.product.sku == "A-1"
    assert match.product.description == "A small espresso cup with a saucer."
    removed = ingest_file(
        write_jsonl(small_rows[:1], "one.jsonl"), CatalogStore.open(settings, writer=True), full_snapshot=True
    )
    assert (removed.removed, removed.total) == (3, 1)


def test_server_refuses_a_mismatched_embedder(chroma_server: str, minilm: Any, tiny_model_dir: Path) -> None:
    settings = RetrievalSettings(chroma_url=chroma_server, collection="pinned_products")
    CatalogStore.open(settings, minilm, writer=True).close()
    with pytest.raises(EmbedderMismatchError, match="all-MiniLM-L6-v2.*384-d.*32-d"):
        CatalogStore.open(settings, get_embedder(str(tiny_model_dir)))
