"""Product catalog: schema and readers, the Chroma store, ingestion and the retriever.

Names load lazily: importing ``retrieval`` imports neither chromadb nor sentence-transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent._lazy import lazy_exports

__all__ = ["CatalogRetriever", "CatalogStore", "IngestSummary", "Product", "Retriever", "ingest_file",
           "read_catalog"]

if TYPE_CHECKING:  # pragma: no cover
    from retrieval.catalog import Product, read_catalog
    from retrieval.ingest import IngestSummary, ingest_file
    from retrieval.retriever import CatalogRetriever, Retriever
    from retrieval.store import CatalogStore

_LAZY = {
    "CatalogRetriever": "retrieval.retriever",
    "CatalogStore": "retrieval.store",
    "IngestSummary": "retrieval.ingest",
    "Product": "retrieval.catalog",
    "Retriever": "retrieval.retriever",
    "ingest_file": "retrieval.ingest",
    "read_catalog": "retrieval.catalog",
}


__getattr__ = lazy_exports(__name__, _LAZY)
