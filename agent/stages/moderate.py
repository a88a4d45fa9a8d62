"""The policy engine's calls for one state (it judges; ``decide`` settles the chain), and the moderate stage.

* ``guard`` runs a policy call so that a crash never fails open;
* ``sanitize`` vets the untrusted inputs (facts, image text, an old caption) before any prompt;
* ``judge`` reviews an answer, ``judge_draft`` the draft standing in, ``hold`` a rejected answer sent to review
  (the engine only judges: ``decide`` says which of these happens);
* ``ModerateStage`` turns each settled state into its result (the verdict's action sets the status);
  ``queue_for_review`` sends the held results of a batch to the config's review queue.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from caption_agent.errors import CaptionAgentError
from caption_agent.schemas import ModerationOutcome, PolicyDecision
from caption_agent.state import CaptionState, StageTimer


def guard(
    state: CaptionState, stage: str, call: Callable[[], Any], on_crash: Callable[[ModerationOutcome], None]
) -> Any:
    """Run a policy call for ``state`` and return its answer, or None.

    A crash must not fail open: a CaptionAgentError fails the item at ``stage``; any other exception is recorded as
    an ``engine:<stage>`` review decision with the reason, and ``on_crash`` settles the item on that outcome."""
    try:
        return call()
    except CaptionAgentError as exc:
        state.fail(exc, stage)
    except Exception as exc:  # noqa: BLE001 - recorded as a review decision, never swallowed
        state.decisions.append(
            PolicyDecision(rule=f"engine:{stage}", action="review", reason=f"policy crashed: {exc!r}")
        )
        on_crash(ModerationOutcome(action="review", text=""))
    return None


def _guard(state: CaptionState, stage: str, call: Callable[[], Any]) -> Any:
    return guard(state, stage, call, lambda outcome: state.settle(outcome, None))


def sanitize(policy: Any, states: Sequence[CaptionState]) -> None:
    """Mask PII and cut instruction-like text out of each state's facts, image text and old caption."""
    from caption_agent.policies.rules.glossary import refine_terms

    for state in states:
        with StageTimer([state], "sanitize"):
            ctx = state.moderation()
            prepared = _guard(
                state, "sanitize", lambda: policy.prepare_inputs(list(state.facts), state.image_text, ctx)
            )
        if prepared is None:
            continue
        facts, state.image_text, decisions = prepared
        state.facts = list(facts)
        state.glossary, state.constraints = refine_terms(policy, state.moderation())
        state.record(decisions)
        if state.old_caption:  # a dataset row's caption: cleaned the same way, context only (never a fact)
            old = state.old_caption
            cleaned = _guard(state, "sanitize", lambda: policy.clean_text(old, "existing caption", state.moderation()))
            if cleaned is None:
                continue
            state.old_caption = cleaned[0]
            state.record(cleaned[1])


def judge(policy: Any, state: CaptionState, text: str, attempts_left: int) -> ModerationOutcome | None:
    """The policy's verdict on an answer (None: the policy crashed and the item is settled)."""
    with StageTimer([state], "moderate"):
        outcome: ModerationOutcome | None = _guard(
            state, "moderate", lambda: policy.judge(text, state.moderation(attempts_left))
        )
    return outcome


def judge_draft(policy: Any, state: CaptionState, verdict: ModerationOutcome | None) -> ModerationOutcome | None:
    """The verdict on the draft standing in: still moderated (redactions apply; regenerate is impossible). After
    a ``fallback`` verdict on an answer, the engine's ``judge_draft`` (the verdict's decisions, then the draft's);
    otherwise the draft judged on its own."""
    with StageTimer([state], "moderate"):
        if verdict is not None and verdict.action == "fallback":
            ctx = state.moderation(0)
            outcome: ModerationOutcome | None = _guard(state, "moderate", lambda: policy.judge_draft(verdict, ctx))
        else:
            ctx = state.moderation(0, is_fallback=True)
            outcome = _guard(state, "moderate", lambda: policy.judge(state.best, ctx))
    return outcome


def hold(policy: Any, state: CaptionState, outcome: ModerationOutcome, text: str, by: str) -> None:
    """Send a rejected answer to review with every fix the policy makes to it (never the raw answer)."""
    held = _guard(state, "moderate", lambda: policy.judge(text, state.moderation(0, is_fallback=True)))
    if held is None:
        return
    marked = [d.model_copy(update={"details": {**d.details, "pass": "held"}}) for d in held.decisions]
    action = "block" if held.action == "block" else "review"
    state.settle(outcome.model_copy(update={"action": action, "decisions": outcome.decisions + marked}), held.text, by)


class ModerateStage:
    """The verdict applied: each settled state becomes its result."""

    name = "moderate"
    runs_ahead = False

    def __init__(self, parts: Any) -> None:
        self.parts = parts

    def run(self, states: list[CaptionState]) -> None:
        for state in states:
            assert state.outcome is not None, "the refine stage settles every live item"
            state.finish(state.outcome, state.text)


def queue_for_review(config: Any, results: Sequence[Any]) -> None:
    """Add the results that need a person to the config's review queue (none configured: nothing)."""
    if config.policy.review_queue is None:
        return
    from caption_agent.policies.review import ReviewQueue, needs_review

    queue = ReviewQueue(config.policy.review_queue)
    for result in results:
        if needs_review(result):
            queue.add(result)
