"""Rank candidate drafts and give the best one a confidence in [0, 1].

Without a CLIP model the ranker scores agreement: a draft that says what the other drafts say (cosine similarity
of sentence embeddings) is more likely right. The drafter's own score (label probability or sequence
probability) is blended in with ``drafter_weight``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import numpy as np

from caption_agent.schemas import Candidate


class Ranker(ABC):
    """Orders candidates best first, setting ``rank_score``; returns (ranked, confidence of the best)."""

    name: ClassVar[str] = "base"
    model_id: str = ""

    @abstractmethod
    def scores(self, candidates: Sequence[Candidate], image: Any = None) -> np.ndarray:
        """A quality score in [0, 1] per candidate, before blending with the drafter's score."""

    def __init__(self, drafter_weight: float = 0.5) -> None:
        self.drafter_weight = drafter_weight

    def rank(self, candidates: Sequence[Candidate], image: Any = None) -> tuple[list[Candidate], float]:
        if not candidates:
            return [], 0.0
        return self.blend(candidates, self.scores(candidates, image))

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


def drafter_prob(candidate: Candidate) -> float:
    """The drafter's belief in [0, 1]: its score, or exp(mean token logprob) when only a logprob is given."""
    if candidate.logprob is not None and candidate.score <= 0:
        return float(min(1.0, math.exp(candidate.logprob)))
    return float(min(1.0, max(0.0, candidate.score)))


class ConsensusRanker(Ranker):
    """Mean cosine similarity of each draft to the others (sentence embeddings)."""

    name = "consensus"

    def __init__(self, embedder: Any, drafter_weight: float = 0.5) -> None:
        super().__init__(drafter_weight)
        self.embedder = embedder
        self.model_id = getattr(embedder, "model_id", "")

    def scores(self, candidates: Sequence[Candidate], image: Any = None) -> np.ndarray:
        if len(candidates) == 1:
            return np.ones(1)
        vecs = self.embedder.encode([c.text for c in candidates])
        sims = vecs @ vecs.T
        np.fill_diagonal(sims, 0.0)
        return sims.sum(axis=1) / (len(candidates) - 1)
