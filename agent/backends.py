"""Every stage's backend registry in one place, and the config check that runs before any model loads.

Each stage picks its backend by name from a registry (``Registry``, agent/registry.py): drafters and refiners
(``drafter.backend``, ``refiner.backend`` and ``refiner.fallbacks``), the ranker (``ranker.backend``), the
embedder (``retrieval.embedder_backend``), the retriever (``retrieval.backend``) and the policy engine
(``policy.backend``). A package adds its own with ``register`` and selects it in the config.
"""

from __future__ import annotations

from caption_agent.config import AgentConfig
from caption_agent.drafters import DRAFTERS
from caption_agent.embedders import EMBEDDERS, check_embedder
from caption_agent.policies.backend import POLICY_ENGINES, check_policy
from caption_agent.ranking import RANKERS, check_ranker
from caption_agent.refiners import REFINERS
from caption_agent.registry import Registry
from caption_agent.retrieval.base import RETRIEVERS, check_retriever

__all__ = ["REGISTRIES", "check_backends"]

REGISTRIES: dict[str, Registry[object]] = {
    "drafter": DRAFTERS,  # type: ignore[dict-item]
    "refiner": REFINERS,  # type: ignore[dict-item]
    "ranker": RANKERS,  # type: ignore[dict-item]
    "embedder": EMBEDDERS,  # type: ignore[dict-item]
    "retriever": RETRIEVERS,  # type: ignore[dict-item]
    "policy": POLICY_ENGINES,  # type: ignore[dict-item]
}


def check_backends(config: AgentConfig) -> None:
    """ConfigError now, not a traceback at the first image, for any backend name no registry knows (imports no
    backend)."""
    DRAFTERS.check(config.drafter.backend)
    REFINERS.check(config.refiner.backend, "none")
    for name in config.refiner.fallbacks:
        REFINERS.check(name, "draft")
    check_ranker(config.ranker)
    check_embedder(config.retrieval)
    check_retriever(config.retrieval)
    check_policy(config.policy)
