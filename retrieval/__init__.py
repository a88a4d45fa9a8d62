"""Product catalog: schema and readers, the Chroma store, ingestion and the retriever.

Names load lazily: importing ``retrieval`` imports neither chromadb nor sentence-transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# One import name: pyproject.toml maps the folder retrieval/ to `caption_agent.retrieval`. Imported by its folder's
# name (from the repository root) it would be a second copy of the package beside the installed one.
if __name__ != "caption_agent.retrieval":
    raise ImportError(
        f"`import {__name__}` loads the repository folder retrieval/, not the package: "
        "import `caption_agent.retrieval` instead (install the repository first: `make setup`, or `pip install -e .`)."
    )

from caption_agent._lazy import lazy_exports  # noqa: E402 - after the import-name check: a clear error first

__all__ = [
    "RETRIEVERS",
    "CatalogRetriever",
    "CatalogStore",
    "FactRetriever",
    "IngestSummary",
    "Product",
    "Retriever",
    "build_retriever",
    "ingest_file",
    "read_catalog",
]

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.retrieval.base import RETRIEVERS, FactRetriever, build_retriever
    from caption_agent.retrieval.catalog import read_catalog
    from caption_agent.retrieval.ingest import IngestSummary, ingest_file
    from caption_agent.retrieval.product import Product
    from caption_agent.retrieval.retriever import CatalogRetriever, Retriever
    from caption_agent.retrieval.store import CatalogStore

_LAZY = {
    "RETRIEVERS": "caption_agent.retrieval.base",
    "FactRetriever": "caption_agent.retrieval.base",
    "build_retriever": "caption_agent.retrieval.base",
    "CatalogRetriever": "caption_agent.retrieval.retriever",
    "CatalogStore": "caption_agent.retrieval.store",
    "IngestSummary": "caption_agent.retrieval.ingest",
    "Product": "caption_agent.retrieval.product",
    "Retriever": "caption_agent.retrieval.retriever",
    "ingest_file": "caption_agent.retrieval.ingest",
    "read_catalog": "caption_agent.retrieval.catalog",
}


__getattr__ = lazy_exports(__name__, _LAZY)
