"""The draft stage: candidates for every live image, one batch per drafter and style."""

from __future__ import annotations

from typing import Any

from caption_agent.errors import ModelOutputError
from caption_agent.state import CaptionState, StageTimer


def build_drafters(settings: Any) -> Any:
    """Drafters by name (the config's default + per-request choices), with the lite fallback the config allows."""
    from caption_agent.drafters.routing import DrafterRouter

    return DrafterRouter(settings)


class DraftStage:
    name = "draft"
    runs_ahead = False

    def __init__(self, parts: Any) -> None:
        self.parts = parts

    def run(self, states: list[CaptionState]) -> None:
        groups: dict[tuple[str, str], list[CaptionState]] = {}
        backend = self.parts.config.drafter.backend
        for s in states:  # one batch per drafter (the config's, or the one a request names) and style (its prompt)
            assert s.request is not None, "the draft stage reads an image request"
            groups.setdefault((s.request.drafter or backend, s.style_name), []).append(s)
        for (name, style), group in groups.items():
            self._draft_group(name, group, style)

    def _draft_group(self, name: str, states: list[CaptionState], style: str) -> None:
        config, parts = self.parts.config.drafter, self.parts
        wanted = [s.request.n_candidates or config.n_candidates for s in states if s.request is not None]
        with StageTimer(states, "draft"):
            try:
                if name == config.backend:
                    parts.drafters.adopt(name, parts.drafter)  # a drafter set on the agent (shared models) wins
                drafts, drafter, notes = parts.drafters.draft(
                    name, [s.image for s in states], [s.drafted.image for s in states], max(wanted), style
                )
            except Exception as exc:  # noqa: BLE001 - a backend crash fails this batch's items, not the process
                for s in states:
                    s.fail(exc, "draft")
                return
        for state, draft, n in zip(states, drafts, wanted):
            state.draft = draft.model_copy(update={"candidates": draft.candidates[:n]})
            state.image_text = draft.image_text
            state.provenance.drafter = drafter.name
            state.provenance.drafter_model = draft.model_id or drafter.model_id
            state.provenance.fallbacks.extend(notes)
            if not state.draft.candidates:
                state.fail(ModelOutputError("the drafter produced no candidates for this image."), "draft")
