"""The screen stage: load the style preset and the image, then screen the image before any text is written."""

from __future__ import annotations

from typing import Any

from caption_agent.errors import CaptionAgentError
from caption_agent.images import load_image
from caption_agent.locales import normalize_locale
from caption_agent.prompts import load_preset
from caption_agent.schemas import Draft
from caption_agent.stages.moderate import guard
from caption_agent.state import CaptionState, StageTimer


class ScreenStage:
    """Bad input (unknown style, unreadable image, bad locale) fails its item at ``input``; an image the policy
    blocks or holds ends here, before any model writes about it."""

    name = "screen"

    def __init__(self, parts: Any) -> None:
        self.parts = parts

    def run(self, states: list[CaptionState]) -> None:
        config, policy = self.parts.config, self.parts.policy
        for state in states:
            assert state.request is not None, "the screen stage reads an image request"
            with StageTimer([state], "load"):
                try:
                    state.preset = preset = load_preset(state.style_name, config.prompts_dir)
                    state.stamp(policy)
                    state.locale = normalize_locale(state.locale)
                    state.image, info = load_image(state.request.image, config.images)
                    state.draft = Draft(image=info, candidates=[])
                except CaptionAgentError as exc:
                    state.stamp(policy)
                    state.fail(exc, "input")
                    continue
            with StageTimer([state], "screen"):
                screened = guard(
                    state,
                    "screen",
                    lambda: policy.screen_image(state.image, info, preset.name),
                    lambda outcome: state.finish(outcome, None),
                )
            if screened is not None:
                outcome, state.faces = screened
                # One person signal: the drafter and the result see the screen's count (no crops, no embeddings).
                state.draft = Draft(image=info.model_copy(update={"faces": state.faces}), candidates=[])
                state.decisions += outcome.decisions
                if outcome.action in ("block", "review"):
                    state.finish(outcome, None)
