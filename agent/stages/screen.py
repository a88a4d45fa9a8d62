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
    blocks or holds ends here, before any model writes about it.

    The stage touches nothing the later stages use, so ``Stages.run`` screens a batch one item per core at once and
    ahead of them (``runs_ahead``): the screening models run on one-thread sessions (onnxruntime releases the GIL
    while it runs), faster than one item at a time on every core."""

    name = "screen"
    runs_ahead = True

    def __init__(self, parts: Any) -> None:
        self.parts = parts

    def run(self, states: list[CaptionState]) -> None:
        config, policy = self.parts.config, self.parts.policy
        for state in states:
            screen(state, config, policy)


def screen(state: CaptionState, config: Any, policy: Any) -> None:
    """Load and screen one item. Safe to call from several threads at once: each call writes only its state, and
    the policy's image screen shares only thread-safe models."""
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
            return
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
