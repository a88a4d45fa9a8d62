"""The rank stage: order each image's drafts (CLIP-S, or the consensus of their embeddings)."""

from __future__ import annotations

from typing import Any

from caption_agent.state import CaptionState, StageTimer


class RankStage:
    name = "rank"
    runs_ahead = False

    def __init__(self, parts: Any) -> None:
        self.parts = parts

    def run(self, states: list[CaptionState]) -> None:
        ranker = self.parts.ranker
        with StageTimer(states, "rank"):
            try:  # the batch's drafts in one model call
                ranked = ranker.rank_many([s.drafted.candidates for s in states], [s.image for s in states])
            except Exception:  # noqa: BLE001 - then item by item, so that an item fails alone
                ranked = None
        if ranked is None:
            for state in states:
                with StageTimer([state], "rank"):
                    try:
                        self._keep(state, ranker.rank(state.drafted.candidates, state.image))
                    except Exception as exc:  # noqa: BLE001 - fails this item, never the batch
                        state.fail(exc, "rank")
            return
        for state, one in zip(states, ranked):
            self._keep(state, one)

    def _keep(self, state: CaptionState, ranked: tuple[list[Any], float]) -> None:
        state.ranked, state.confidence = ranked
        state.provenance.ranker = f"{self.parts.ranker.name}:{self.parts.ranker.model_id}"
