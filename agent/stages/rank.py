"""The rank stage: order each image's drafts (CLIP-S, or the consensus of their embeddings)."""

from __future__ import annotations

from typing import Any

from caption_agent.state import CaptionState, StageTimer


def build_embedder(settings: Any) -> Any:
    """The text embedder of a ``RetrievalSettings`` section (``retrieval.embedder_backend`` from ``EMBEDDERS``; the
    consensus ranker and the catalog share it)."""
    from caption_agent.embedders import build_embedder as build

    return build(settings)


def build_ranker(config: Any, embedder: Any) -> Any:
    """The ranker of ``config.ranker`` from ``RANKERS`` (CLIP-S when ``clip_model`` is set, else the consensus of
    ``embedder``'s embeddings); ``embedder`` may be a function that loads it, called only if the ranker needs it."""
    from caption_agent.ranking import build_ranker as build

    return build(config.ranker, embedder)


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
