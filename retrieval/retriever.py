"""Retriever: product facts for a draft caption, filtered by the request's hints; also a LangChain retriever.

Facts are catalog text returned verbatim; they are data for later stages (the policy engine neutralises
instructions and redacts PII before any prompt is built). Nothing here builds a prompt.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from caption_agent.config_sections import RetrievalSettings
from caption_agent.embedders import EmbedderSource, load_embedder
from caption_agent.retrieval.base import FactRetriever
from caption_agent.retrieval.product import Product
from caption_agent.retrieval.relevance import RelevanceGate
from caption_agent.retrieval.store import CatalogStore, Match
from caption_agent.schemas import DraftSubject, GroundingFact, ProductHint

__all__ = [
    "Retriever",
    "CatalogRetriever",
    "RelevanceGate",
    "build_where",
    "query_text",
    "product_facts",
    "similar_facts",
]


def build_where(hint: ProductHint | None, locale: str | None = None) -> dict[str, Any] | None:
    """Chroma ``where`` for the hint and locale: exact sku/brand/category, language of the locale.

    Chroma needs ``$and`` for two or more conditions. A named sku is not filtered by language: the caller
    named the product, and translating its facts is the refiner's job.
    """
    hint = hint or ProductHint()
    conds: list[dict[str, Any]] = [
        {key: value} for key, value in (("sku", hint.sku), ("brand", hint.brand), ("category", hint.category)) if value
    ]
    if locale and not hint.sku:
        conds.append({"lang": locale.replace("_", "-").split("-")[0].lower()})
    if not conds:
        return None
    return conds[0] if len(conds) == 1 else {"$and": conds}


def query_text(draft: str, hint: ProductHint | None = None) -> str:
    """The text embedded for a query: the draft plus brand/category hints (a sku carries no meaning)."""
    parts = [draft.strip()] if draft and draft.strip() else []
    if hint is not None and hint.brand:
        parts.append(f"Brand: {hint.brand}")
    if hint is not None and hint.category:
        parts.append(f"Category: {hint.category}")
    return ". ".join(parts)


def product_fields(product: Product) -> dict[str, str]:
    """Every product field as a string; attributes flattened to ``attributes.NAME``, localized texts to
    ``i18n.<locale>.title`` / ``.description`` / ``.attributes.NAME``."""
    fields = {
        "sku": product.sku,
        "title": product.title,
        "brand": product.brand or "",
        "category": product.category or "",
        "description": product.description,
        "locale": product.locale,
    }
    fields.update({f"attributes.{name}": value for name, value in product.attributes.items()})
    fields.update(product.fields_i18n())  # `i18n.<locale>.title` ...: the catalog's own text in other locales
    return {k: v for k, v in fields.items() if v}


def product_facts(product: Product, score: float) -> list[GroundingFact]:
    """One fact per useful field: title, brand, category, each attribute ("color: matte black"), description."""
    fields = product_fields(product)
    pairs: list[tuple[str, str]] = [("title", product.title)]
    if product.brand:
        pairs.append(("brand", f"brand: {product.brand}"))
    if product.category:
        pairs.append(("category", f"category: {product.category}"))
    pairs += [(f"attributes.{name}", f"{name}: {value}") for name, value in product.attributes.items()]
    if product.description:
        pairs.append(("description", product.description))
    return [
        GroundingFact(
            id=f"{product.sku}:{field}", sku=product.sku, field=field, text=text, score=round(score, 4), fields=fields
        )
        for field, text in pairs
    ]


def similar_facts(product: Product, score: float) -> list[GroundingFact]:
    """What a product found by similarity alone may tell a caption: its category, never its name.

    Similarity is no evidence that the photo shows *this* product: its title, brand, description and attributes
    stay out of the facts (and out of ``fields``), so no refiner can name it or state its colour or size. Its
    category may still inform category words, and the relevance gate judges it."""
    if not product.category:
        return []
    fields = {"sku": product.sku, "category": product.category}
    return [
        GroundingFact(
            id=f"{product.sku}:category",
            sku=product.sku,
            field="category",
            text=f"category: {product.category}",
            score=round(score, 4),
            fields=fields,
        )
    ]


class Retriever(FactRetriever):
    """Finds the catalog products behind a draft caption in the Chroma catalog (``chroma``) and returns their facts.

    ``top_k`` counts products (each yields several facts); ``min_score`` is the minimum cosine similarity
    between the query and a product's text, ignored when the hint names a sku. ``gate`` (a RelevanceGate)
    judges products found by similarity alone against the draft's subject; a named sku is never gated.
    """

    name = "chroma"

    def __init__(
        self, store: CatalogStore, top_k: int = 4, min_score: float = 0.2, gate: RelevanceGate | None = None
    ) -> None:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        if not 0.0 <= min_score <= 1.0:
            raise ValueError("min_score must be within [0, 1]")
        self.store = store
        self.top_k = top_k
        self.min_score = min_score
        self.gate = gate

    @classmethod
    def from_settings(cls, settings: RetrievalSettings, embedder: EmbedderSource) -> Retriever | None:
        """The catalog at ``retrieval.catalog_dir`` (embedded) or ``retrieval.chroma_url`` (server), with the
        relevance gate when ``retrieval.relevance_gate``; None (no grounding) when neither is set."""
        if settings.catalog_dir is None and settings.chroma_url is None:
            return None
        store = CatalogStore.open(settings, load_embedder(embedder))
        gate = RelevanceGate(settings.gate_min_score) if settings.relevance_gate else None
        return cls(store, top_k=settings.top_k, min_score=settings.min_score, gate=gate)

    @property
    def location(self) -> str:
        return self.store.location

    def known_skus(self, skus: Sequence[str]) -> set[str]:
        return set(self.store.content_hashes(skus))

    def count(self) -> int:
        return self.store.count()

    def close(self) -> None:
        """Close the store (its writer lock, if any); the embedder is shared and stays loaded."""
        self.store.close()

    def search(
        self,
        query: str,
        hint: ProductHint | None = None,
        locale: str | None = None,
        k: int | None = None,
        min_score: float | None = None,
    ) -> list[Match]:
        """Matching products, best first. A named sku is looked up directly (score 1.0, no threshold)."""
        return self.search_many([(query, hint)], locale, k, min_score)[0]

    def search_many(
        self,
        queries: Sequence[tuple[str, ProductHint | None]],
        locale: str | None = None,
        k: int | None = None,
        min_score: float | None = None,
    ) -> list[list[Match]]:
        """``search`` for many (draft, hint) pairs: one embedder call for all texts, one Chroma query per filter."""
        k = k or self.top_k
        floor = self.min_score if min_score is None else min_score
        out: list[list[Match]] = [[] for _ in queries]
        groups: dict[str, tuple[dict[str, Any] | None, list[int], list[str]]] = {}
        for i, (query, hint) in enumerate(queries):
            hint = hint or ProductHint()
            if hint.sku:  # looked up by id (the primary key); brand/category, if also given, must agree
                out[i] = self.store.lookup([hint.sku], build_where(hint.model_copy(update={"sku": None})))
            elif text := query_text(query, hint):
                where = build_where(hint, locale)
                group = groups.setdefault(json.dumps(where, sort_keys=True), (where, [], []))
                group[1].append(i)
                group[2].append(text)
        texts = [text for _, _, group_texts in groups.values() for text in group_texts]
        vectors = self.store.embedder.encode(texts) if texts else None
        start = 0
        for where, indices, _ in groups.values():
            assert vectors is not None  # a group exists only for a query text
            ranked = self.store.query_many(vectors[start : start + len(indices)], k, where)
            start += len(indices)
            for i, matches in zip(indices, ranked):
                out[i] = [m for m in matches if m.score >= floor]
        return out

    def facts_many(
        self,
        queries: Sequence[tuple[str, ProductHint | None]],
        locale: str | None = None,
        k: int | None = None,
        subjects: Sequence[DraftSubject | None] | None = None,
    ) -> list[list[GroundingFact]]:
        """``facts`` for many (draft, hint) pairs, batched like ``search_many``. A sku's product gives all its facts;
        a product found by similarity gives only its category (``similar_facts``). With ``subjects`` (one per
        query) and a gate, products found by similarity pass the relevance gate (``gated`` says why not)."""
        found = [
            [
                fact
                for match in matches
                for fact in (product_facts if hint and hint.sku else similar_facts)(match.product, match.score)
            ]
            for matches, (_, hint) in zip(self.search_many(queries, locale, k), queries)
        ]
        if subjects is None or self.gate is None:
            return found
        pairs = zip(found, subjects, queries)
        return [self.gated(facts, subject, query, hint)[0] for facts, subject, (query, hint) in pairs]

    def as_langchain(
        self,
        *,
        k: int | None = None,
        hint: ProductHint | None = None,
        locale: str | None = None,
        min_score: float | None = None,
    ) -> CatalogRetriever:
        """This retriever as a LangChain ``BaseRetriever`` (one Document per product)."""
        return CatalogRetriever(
            store=self.store,
            k=k or self.top_k,
            hint=hint,
            locale=locale,
            min_score=self.min_score if min_score is None else min_score,
        )


class CatalogRetriever(BaseRetriever):
    """LangChain retriever over a CatalogStore: ``invoke(query, k=3)`` returns one Document per product.

    ``Document.id`` is the sku; ``metadata`` holds the product fields, ``score`` and ``fact_ids``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: CatalogStore = Field(description="An open CatalogStore.")
    k: int = Field(4, ge=1, le=100, description="Products returned per query.")
    min_score: float = Field(0.2, ge=0.0, le=1.0, description="Minimum relevance; ignored for a named sku.")
    hint: ProductHint | None = Field(None, description="Metadata filter (sku/brand/category).")
    locale: str | None = Field(None, description="Keep products in this locale's language.")

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        hint: ProductHint | None = None,
        locale: str | None = None,
    ) -> list[Document]:
        retriever = Retriever(self.store, top_k=self.k, min_score=self.min_score)
        matches = retriever.search(query, hint or self.hint, locale or self.locale, k or self.k)
        return [_to_document(m) for m in matches]


def _to_document(match: Match) -> Document:
    facts = product_facts(match.product, match.score)
    metadata: dict[str, Any] = {
        **product_fields(match.product),
        "score": round(match.score, 4),
        "fact_ids": [f.id for f in facts],
    }
    return Document(page_content=match.document, metadata=metadata, id=match.product.sku)
