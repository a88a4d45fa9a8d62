"""The rank stage: order each image's drafts (CLIP-S, or the consensus of their embeddings)."""

from __future__ import annotations

from typing import Any

from caption_agent.state import CaptionState, StageTimer


def build_embedder(settings: Any) -> Any:
    """The text embedder of a ``RetrievalSettings`` section (the consensus ranker and the catalog share it)."""
    from caption_agent.embedders import get_embedder

    return get_embedder(settings.embedder, runtime=settings.embedder_runtime)


def build_ranker(config: Any, embedder: Any) -> Any:
    """CLIP-S when ``ranker.clip_model`` is set, else the consensus ranker over ``embedder``."""
    if config.ranker.clip_model:
        from caption_agent.ranking_clip import ClipRanker

        return ClipRanker(config.ranker.clip_model, drafter_weight=config.ranker.drafter_weight)
    from caption_agent.ranking import ConsensusRanker

    return ConsensusRanker(embedder, drafter_weight=config.ranker.drafter_weight)


class RankStage:
    name = "rank"

    def __init__(self, parts: Any) -> None:
        self.parts = parts

    def run(self, states: list[CaptionState]) -> None:
        ranker = self.parts.ranker
        for state in states:
            with StageTimer([state], "rank"):
                try:
                    state.ranked, state.confidence = ranker.rank(state.drafted.candidates, state.image)
                    state.provenance.ranker = f"{ranker.name}:{ranker.model_id}"
                except Exception as exc:  # noqa: BLE001 - fails this item, never the batch
                    state.fail(exc, "rank")
