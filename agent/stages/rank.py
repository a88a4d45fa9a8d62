"""The rank stage: order each image's drafts (CLIP-S, or the consensus of their embeddings)."""

from __future__ import annotations

from typing import Any

from caption_agent.state import CaptionState, StageTimer


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
