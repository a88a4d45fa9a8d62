"""Rank candidate drafts and give the best one a confidence in [0, 1].

Without a CLIP model the ranker scores agreement: a draft that says what the other drafts say (cosine similarity
of sentence embeddings) is more likely right. The drafter's own score (label probability or sequence
probability) is blended in with ``drafter_weight``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence, cast

import numpy as np
from pydantic import BaseModel

from caption_agent.config_sections import RankerSettings
from caption_agent.embedders import Embedder, EmbedderSource, load_embedder
from caption_agent.registry import Registry
from caption_agent.schemas import Candidate


class Ranker(ABC):
    """Orders candidates best first, setting ``rank_score``; returns (ranked, confidence of the best).

    A backend registered in ``RANKERS`` is built by ``from_settings`` from the ``[ranker]`` section; its ``name``
    is its registry name."""

    name: ClassVar[str] = "base"
    model_id: str = ""
    gives_clip_s: ClassVar[bool] = False  # has ``clip_s(texts, image)``: raw CLIP-S, comparable across captions
    settings_model: ClassVar[type[BaseModel] | None] = None  # a registered backend's ``ranker.options`` entry

    @classmethod
    def from_settings(cls, settings: RankerSettings, embedder: EmbedderSource) -> Ranker:
        """Build from ``[ranker]``. Default (a registered backend): ``cls(options, embedder=embedder,
        drafter_weight=settings.drafter_weight)`` with ``ranker.options.<name>`` validated by ``settings_model``;
        ``embedder`` (or the function that loads it) is loaded for this call."""
        options = RANKERS.options(cls.name, settings.options.get(cls.name, {}))
        return cast(Any, cls)(options, embedder=load_embedder(embedder), drafter_weight=settings.drafter_weight)

    @abstractmethod
    def scores(self, candidates: Sequence[Candidate], image: Any = None) -> np.ndarray:
        """A quality score in [0, 1] per candidate, before blending with the drafter's score."""

    def __init__(self, drafter_weight: float = 0.5) -> None:
        self.drafter_weight = drafter_weight

    def rank(self, candidates: Sequence[Candidate], image: Any = None) -> tuple[list[Candidate], float]:
        if not candidates:
            return [], 0.0
        return self.blend(candidates, self.scores(candidates, image))

    def rank_many(
        self, groups: Sequence[Sequence[Candidate]], images: Sequence[Any]
    ) -> list[tuple[list[Candidate], float]]:
        """``rank`` of each group (one image's candidates, beside its image); a backend that scores many groups in
        one model call overrides this."""
        return [self.rank(c, im) for c, im in zip(groups, images)]

    def blend(self, candidates: Sequence[Candidate], quality: np.ndarray) -> tuple[list[Candidate], float]:
        """Confidence = w * drafter probability + (1 - w) * quality, best first."""
        quality = np.clip(quality, 0.0, 1.0)
        w = self.drafter_weight
        ranked = [
            c.model_copy(update={"rank_score": round(float(w * drafter_prob(c) + (1 - w) * q), 4)})
            for c, q in zip(candidates, quality)
        ]
        ranked.sort(key=lambda c: -(c.rank_score or 0.0))
        return ranked, float(ranked[0].rank_score or 0.0)

    def clip_s(self, texts: Sequence[str], image: Any) -> np.ndarray:
        """Raw CLIP-S of each text against the image, for rankers with ``gives_clip_s``."""
        raise NotImplementedError(f"the {self.name} ranker gives no CLIP-S; use a CLIP ranker (ranker.clip_model).")

    def check_ready(self) -> object:
        """Readiness probe (a server-backed ranker checks its server); raises when not ready."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models or connections."""


def drafter_prob(candidate: Candidate) -> float:
    """The drafter's belief in [0, 1]: its score, or exp(mean token logprob) when only a logprob is given."""
    if candidate.logprob is not None and candidate.score <= 0:
        return float(min(1.0, math.exp(candidate.logprob)))
    return float(min(1.0, max(0.0, candidate.score)))


class ConsensusRanker(Ranker):
    """Mean cosine similarity of each draft to the others (sentence embeddings)."""

    name = "consensus"

    def __init__(self, embedder: Embedder, drafter_weight: float = 0.5) -> None:
        super().__init__(drafter_weight)
        self.embedder = embedder
        self.model_id = embedder.model_id

    @classmethod
    def from_settings(cls, settings: RankerSettings, embedder: EmbedderSource) -> Ranker:
        return cls(load_embedder(embedder), drafter_weight=settings.drafter_weight)

    def scores(self, candidates: Sequence[Candidate], image: Any = None) -> np.ndarray:
        if len(candidates) == 1:
            return np.ones(1)
        return _consensus(self.embedder.encode([c.text for c in candidates]))

    def rank_many(
        self, groups: Sequence[Sequence[Candidate]], images: Sequence[Any]
    ) -> list[tuple[list[Candidate], float]]:
        """Every group's drafts embedded in one call (the embedder spreads one call over the cores)."""
        texts = [c.text for g in groups if len(g) > 1 for c in g]
        vecs = self.embedder.encode(texts) if texts else None
        out: list[tuple[list[Candidate], float]] = []
        start = 0
        for group in groups:
            if len(group) <= 1:
                out.append(self.rank(group))
                continue
            assert vecs is not None
            out.append(self.blend(group, _consensus(vecs[start : start + len(group)])))
            start += len(group)
        return out


def _consensus(vecs: np.ndarray) -> np.ndarray:
    """Mean cosine similarity of each (unit) vector to the others."""
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, 0.0)
    return np.asarray(sims.sum(axis=1) / (len(vecs) - 1))


RANKERS: Registry[Ranker] = Registry(
    "ranker", {"consensus": "caption_agent.ranking:ConsensusRanker", "clip": "caption_agent.ranking_clip:ClipRanker"}
)


def build_ranker(settings: RankerSettings, embedder: EmbedderSource) -> Ranker:
    """The ranker ``settings`` select: ``ranker.backend``, else CLIP-S when ``ranker.clip_model`` is set, else
    consensus over ``embedder``'s sentence embeddings. ``embedder`` may be a function that loads it: the CLIP
    ranker never calls it."""
    return RANKERS.create(settings.selected(), settings, embedder=embedder)


def check_ranker(settings: RankerSettings) -> None:
    """ConfigError now for a ranker backend no one registered (imports nothing)."""
    RANKERS.check(settings.selected())
