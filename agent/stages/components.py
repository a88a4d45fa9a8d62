"""The models and engines the stages share, built lazily from the config, once (a given one is used as it is).

``CaptionAgent`` is a ``Components``: ``agent.ranker``, ``agent.policy``... are these. Each is built by its registry's
factory (``ranking.build_ranker``, ``embedders.build_embedder``, ``retrieval.base.build_retriever``,
``policies.backend.build_policy``; drafters and the refiner chain by ``draft.build_drafters`` and
``refine.build_refiner``).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from caption_agent.backends import check_backends
from caption_agent.config import AgentConfig

NAMES = ("drafter", "ranker", "retriever", "refiner", "policy", "embedder")


class Components:
    def __init__(self, config: AgentConfig | None = None, **given: Any) -> None:
        """Components passed in (already loaded models shared between agents, or test fakes) are used as they
        are and never closed here; the others are built from ``config`` on first use."""
        self.config = config or AgentConfig.load()
        check_backends(self.config)  # a misspelt backend is a ConfigError now, not a traceback at the first image
        unknown = set(given) - set(NAMES)
        if unknown:
            raise TypeError(f"unknown component(s): {sorted(unknown)}; known: {', '.join(NAMES)}")
        self._given = {name: part for name, part in given.items() if part is not None}
        self.__dict__.update(self._given)  # what cached_property would have built

    def built(self, name: str) -> Any:
        """The component if it is built (or given) already, else None: nothing loads."""
        return self.__dict__.get(name)

    @cached_property
    def drafters(self) -> Any:
        from caption_agent.stages.draft import build_drafters

        return build_drafters(self.config.drafter)

    @cached_property
    def drafter(self) -> Any:
        return self.drafters.get()[0]

    @cached_property
    def embedder(self) -> Any:
        from caption_agent.embedders import build_embedder

        return build_embedder(self.config.retrieval)

    @cached_property
    def ranker(self) -> Any:
        from caption_agent.ranking import build_ranker

        return build_ranker(self.config.ranker, lambda: self.embedder)  # loaded only if the ranker needs it

    @cached_property
    def retriever(self) -> Any:
        from caption_agent.retrieval.base import build_retriever

        return build_retriever(self.config.retrieval, lambda: self.embedder)  # None when no catalog is configured

    @cached_property
    def refiner(self) -> Any:
        """The refiner chain: the primary backend, its fallbacks, then the draft (``refiner.fallbacks``)."""
        from caption_agent.stages.refine import build_refiner

        return build_refiner(self.config.refiner)

    @cached_property
    def policy(self) -> Any:
        from caption_agent.policies.backend import build_policy

        return build_policy(self.config.policy)

    def close(self) -> None:
        """Release the components built here (models, connections, the catalog's lock); given ones stay open."""
        router = self.__dict__.pop("drafters", None)
        if router is not None and "drafters" not in self._given:  # a router shared with another agent stays open
            router.close()
        owned = {name: self.__dict__.pop(name, None) for name in ("drafter", "refiner", "retriever")}
        owned = {name: part for name, part in owned.items() if name not in self._given}
        for name in ("drafter", "refiner"):
            if owned.get(name) is not None:
                owned[name].close()
        if owned.get("retriever") is not None:
            owned["retriever"].close()
