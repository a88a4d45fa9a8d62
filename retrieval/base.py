"""The grounding stage's contract: a FactRetriever finds catalog facts for drafts; ``RETRIEVERS`` names them.

``build_retriever(settings, embedder)`` builds the one ``retrieval.backend`` names (``chroma``: the Chroma catalog,
embedded folder or server, with its relevance gate), or returns None when the settings configure no catalog.
Importing this module imports neither chromadb nor LangChain.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Sequence

from pydantic import BaseModel

from caption_agent.config_sections import RetrievalSettings
from caption_agent.embedders import EmbedderSource, load_embedder
from caption_agent.registry import Registry
from caption_agent.schemas import DraftSubject, GroundingFact, ProductHint

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.retrieval.relevance import RelevanceGate

__all__ = ["RETRIEVERS", "FactRetriever", "build_retriever", "check_retriever"]


class FactRetriever(ABC):
    """Base of every retriever backend: facts for (draft, hint) pairs, batched. Facts are catalog text, data for
    later stages (the policy engine neutralises them before any prompt). ``name`` is the registry name."""

    name: ClassVar[str] = "base"
    settings_model: ClassVar[type[BaseModel] | None] = None  # a registered backend's ``retrieval.options`` entry
    gate: RelevanceGate | None = None  # judges products found by similarity alone; None: every product passes

    @classmethod
    def from_settings(cls, settings: RetrievalSettings, embedder: EmbedderSource) -> FactRetriever | None:
        """Build from ``[retrieval]``, or None when the settings configure no catalog for this backend. Default
        (a registered backend): ``cls(options, embedder=...)`` with ``retrieval.options.<name>`` validated by
        ``settings_model``; the embedder is loaded only for this call."""
        options = RETRIEVERS.options(cls.name, settings.options.get(cls.name, {}))
        return cls(options, embedder=load_embedder(embedder))  # type: ignore[call-arg]

    @property
    def location(self) -> str:
        """Where the catalog lives, for messages ("the catalog at ... holds no products")."""
        return ""

    @abstractmethod
    def facts_many(
        self,
        queries: Sequence[tuple[str, ProductHint | None]],
        locale: str | None = None,
        k: int | None = None,
        subjects: Sequence[DraftSubject | None] | None = None,
    ) -> list[list[GroundingFact]]:
        """Facts for each (draft, hint) pair, in order; with ``subjects`` and a gate, gated like ``gated``."""

    def facts(
        self, query: str, hint: ProductHint | None = None, locale: str | None = None, k: int | None = None
    ) -> list[GroundingFact]:
        """Facts of the products behind one draft."""
        return self.facts_many([(query, hint)], locale, k)[0]

    def gated(
        self, facts: list[GroundingFact], subject: DraftSubject | None, draft: str, hint: ProductHint | None = None
    ) -> tuple[list[GroundingFact], str | None]:
        """``facts`` less the products the relevance gate rejects, and why (None when nothing was dropped).
        Facts of a sku the caller named, or any facts when this retriever has no gate, pass untouched."""
        if self.gate is None or (hint is not None and hint.sku):
            return facts, None
        return self.gate.filter(facts, subject, draft)

    def known_skus(self, skus: Sequence[str]) -> set[str]:
        """The skus of ``skus`` the catalog holds (a sku it lacks is bad input). Default: all of them."""
        return set(skus)

    def count(self) -> int | None:
        """Products in the catalog; None when the backend cannot tell."""
        return None

    def check_ready(self) -> object:
        """Readiness probe (the service's /readyz); raises when the catalog cannot be read."""
        return self.count()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and locks."""


RETRIEVERS: Registry[FactRetriever] = Registry("retriever", {"chroma": "caption_agent.retrieval.retriever:Retriever"})


def build_retriever(settings: RetrievalSettings, embedder: EmbedderSource) -> FactRetriever | None:
    """The retriever ``retrieval.backend`` names, built from ``settings`` with its relevance gate; None when no
    catalog is configured. ``embedder`` may be a function that loads it, so no catalog means no embedder loaded."""
    return RETRIEVERS.get(settings.backend).from_settings(settings, embedder)


def check_retriever(settings: RetrievalSettings) -> None:
    """ConfigError now for a retriever backend no one registered (imports nothing)."""
    RETRIEVERS.check(settings.backend)
