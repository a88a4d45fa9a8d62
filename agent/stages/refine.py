"""The refine stage: vet the inputs, then walk the refiner chain until every state is settled.

The chain (``refiners.chain``) is the primary refiner (an LLM), its fallbacks (the template refiner), then the
draft. Each link gets up to ``max_regenerations + 1`` refine/moderate rounds (one for deterministic links): all
pending states are refined at once (batched, concurrent on servers), each answer is judged by the policy
(``moderate.judge``), and ``decide`` says what follows: retry with feedback, the next link, publish, hold or
fail. Provenance ``refined_by`` names the link that wrote the published text.

The draft stands in for a refined text only when ``state.draft_ok``: a ranked English draft for an English
caption can; a source caption being localized into another language cannot (``decide.fall_back``).
"""

from __future__ import annotations

from typing import Any, Sequence

from caption_agent.errors import BackendError, ModelOutputError
from caption_agent.locales import language_code
from caption_agent.refiners.chain import CannotComposeError, as_chain
from caption_agent.schemas import ModerationOutcome, PolicyDecision
from caption_agent.stages import moderate
from caption_agent.stages.decide import Answer, Attempt, Left, Step, decide, fall_back
from caption_agent.state import CaptionState, StageTimer


def build_refiner(settings: Any) -> Any:
    """The refiner chain a ``RefinerSettings`` describes: the primary backend, its fallbacks, then the draft."""
    from caption_agent.refiners import build_chain

    return build_chain(settings)


class RefineStage:
    """Refine and moderate every live state; each ends with an outcome (or an error result)."""

    name = "refine"
    runs_ahead = False

    def __init__(self, parts: Any) -> None:
        self.parts = parts

    def run(self, states: list[CaptionState]) -> None:
        for state in states:  # the drafters write English: a draft stands in only for an English caption
            if state.request is not None:
                state.draft_ok = language_code(state.locale) == "en"
        refine(self.parts.refiner, self.parts.policy, states, self.parts.config.policy.max_regenerations)


def refine(refiner: Any, policy: Any, states: Sequence[CaptionState], max_regenerations: int) -> None:
    """Settle every state: sanitize, then walk the chain (a ``RefinerChain``, one refiner, or None); what a link
    cannot settle goes on to the next link, then to ``decide.fall_back``."""
    moderate.sanitize(policy, states)
    chain = as_chain(refiner)
    for state in states:
        state.draft_ok = state.draft_ok and chain.draft
    pending = [s for s in states if not s.settled]
    for index, link in enumerate(chain.links):
        if not pending:
            break
        attempts = 1 if link.deterministic else max_regenerations + 1
        pending = _run_link(link, policy, pending, attempts, last=index == len(chain.links) - 1)
        for state in pending:  # the next link starts afresh: no feedback meant for another model
            state.feedback = []
    for state in states:
        if not state.settled:  # no refiner configured
            state.provenance.fallbacks.append("refine: no refiner configured")
            if not state.draft_ok and state.gap is None:  # nothing can write this language: a person decides
                state.gap = CannotComposeError(
                    f"no refiner is configured and the English draft cannot stand in for {state.locale}"
                )
            _apply(policy, state, _fall_back(state))


def _answer(out: Any) -> Answer:
    if not isinstance(out, BaseException):
        return "text"
    if isinstance(out, BackendError) and not isinstance(out, ModelOutputError):
        return "down"
    if isinstance(out, CannotComposeError):
        return "cannot"
    return "unusable" if isinstance(out, ModelOutputError) else "broken"


def _left(state: CaptionState, attempts: int, last: bool) -> Left:
    return Left(attempts, last, state.draft_ok, rejected=state.rejected is not None, gap=state.gap is not None)


def _fall_back(state: CaptionState) -> Step:
    return fall_back(_left(state, 0, True))


def _run_link(link: Any, policy: Any, states: list[CaptionState], attempts: int, last: bool) -> list[CaptionState]:
    """Refine, moderate and regenerate ``states`` with one link; return those it passes to the next link."""
    pending, through = list(states), []
    for attempt in range(attempts):
        if not pending:
            break
        with StageTimer(pending, "refine"):
            try:
                outputs = list(link.refine_many([s.refine_job() for s in pending]))
            except Exception as exc:  # noqa: BLE001 - a refiner that breaks its contract fails these items only
                outputs = [exc] * len(pending)
        if len(outputs) != len(pending):  # never publish a draft for a job the refiner did not answer
            missing = ModelOutputError(f"the refiner answered {len(outputs)} of {len(pending)} jobs")
            outputs = [*outputs[: len(pending)], *[missing] * (len(pending) - len(outputs))]
        retry = []
        for state, out in zip(pending, outputs):
            left = attempts - attempt - 1
            state.provenance.refiner, state.provenance.refiner_model = link.name, link.model_id
            state.models[link.name] = link.model_id
            state.provenance.refine_attempts += 1
            kind = _answer(out)
            outcome = None
            if kind == "text":
                state.facts_used = list(out.facts_used)
                state.provenance.fallbacks += [n for n in out.notes if n.startswith("locale:")]
                outcome = moderate.judge(policy, state, out.caption, left)
                if outcome is None:  # the policy crashed: the item is held (or failed) already
                    continue
                attempt_ = Attempt("text", outcome.action)
            else:
                if kind != "down":
                    state.provenance.fallbacks.append(f"refine attempt {attempt + 1} ({link.name}): {out}")
                if kind == "cannot":
                    state.gap = out
                attempt_ = Attempt(kind)
            step = decide(attempt_, _left(state, left, last))
            if step.kind == "retry":
                state.feedback = (
                    list(outcome.feedback)
                    if outcome is not None
                    else [f"your previous answer was unusable ({out}); answer as instructed"]
                )
                if outcome is not None:
                    state.record(outcome.decisions)
                retry.append(state)
            elif step.kind == "next_link":
                if outcome is not None:  # the next link writes before the draft
                    state.record(outcome.decisions)
                    state.provenance.fallbacks.append(
                        f"policy: {outcome.action} on the {link.name} answer; the next refiner writes"
                    )
                    state.rejected = (outcome, out.caption, link.name)
                through.append(state)
            else:
                _apply(policy, state, step, out, outcome, link.name)
        pending = retry
    return through


def _apply(
    policy: Any,
    state: CaptionState,
    step: Step,
    out: Any = None,
    outcome: ModerationOutcome | None = None,
    by: str = "",
) -> None:
    """Carry out a publish, hold or fail step; ``out`` is the link's answer (a RefinedCaption or an exception),
    ``outcome`` the policy's verdict on it (None when there was no text to judge)."""
    if outcome is not None and step.what == "draft":
        state.provenance.fallbacks.append(
            f"policy: {outcome.action} after {state.provenance.refine_attempts} attempt(s)"
        )
    if step.what == "answer" and step.kind == "publish":
        assert outcome is not None
        state.settle(outcome, outcome.text, by)
    elif step.what == "answer":  # hold the rejected answer, as moderated text
        assert outcome is not None
        state.provenance.fallbacks.append(f"policy: {outcome.action}; the draft cannot stand in, held for review")
        moderate.hold(policy, state, outcome, out.caption, by)
    elif step.what == "draft":
        if outcome is not None and outcome.action != "fallback":
            state.record(outcome.decisions)  # a fallback verdict's decisions come back with the draft's
        judged = moderate.judge_draft(policy, state, outcome)
        if judged is not None:
            state.settle(judged, judged.text, "draft")
    elif step.what == "rejected":
        assert state.rejected is not None
        rejected, text, link = state.rejected
        state.provenance.fallbacks.append(f"the draft cannot stand in; the {link} answer is held for review")
        moderate.hold(policy, state, rejected, text, link)
    elif step.what == "gap":
        assert state.gap is not None
        decision = PolicyDecision(rule="refiner", action="review", reason=state.gap.reason)
        state.settle(ModerationOutcome(action="review", text="", decisions=[decision]), None)
    else:
        state.fail(out if isinstance(out, BaseException) else _no_answer(), "refine")


def _no_answer() -> ModelOutputError:
    return ModelOutputError(
        "no usable refined text, and the English draft cannot stand in for this locale",
        fix="retry the item (--retry-errors), add the template refiner to refiner.fallbacks, or use a "
        "stronger refiner model.",
    )
