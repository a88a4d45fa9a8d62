"""The one refine -> moderate -> regenerate -> fallback loop, used by the caption pipeline and localization.

Each ``Refinement`` is one text to write. The loop vets its untrusted inputs, asks the refiner for every pending
item at once (batched, concurrent on servers), moderates each answer, regenerates with the policy's feedback while
attempts are left, and settles every item on exactly one ending:

* ``outcome`` set: publish ``outcome.text`` under ``outcome.action`` (allow/redact/fallback -> ok, review, block);
* ``error`` set: the item failed in a way a retry may fix (the refiner's server is down, or no answer was usable
  and the draft cannot stand in) and becomes an error record.

The draft stands in for the refined text (moderated again, as a fallback) only when ``fallback_ok``: a ranked
draft in the target language can; a source caption being localized into another language cannot, so such items
go to review (a rejected answer) or fail (no usable answer) instead of publishing the wrong language.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from caption_agent.errors import BackendError, CaptionAgentError, ModelOutputError
from caption_agent.refiners.base import RefineJob
from caption_agent.schemas import ModerationOutcome, PolicyDecision, Provenance
from caption_agent.work import StageTimer


@dataclass
class Refinement:
    """One item of the loop: the refine job, its moderation context, and where the loop settled it."""

    job: RefineJob
    ctx: Any  # ModerationContext; kept in step with the job (facts, image text, attempts left)
    provenance: Provenance = field(default_factory=Provenance)
    decisions: list[PolicyDecision] = field(default_factory=list)
    fallback_ok: bool = True
    facts_used: list[str] = field(default_factory=list)
    outcome: ModerationOutcome | None = None
    text: str | None = None
    error: BaseException | None = None
    error_stage: str = ""

    @property
    def settled(self) -> bool:
        return self.outcome is not None or self.error is not None

    def fail(self, exc: BaseException, stage: str) -> None:
        self.error, self.error_stage = exc, stage

    def finish(self, outcome: ModerationOutcome, text: str | None) -> None:
        self.decisions += [d for d in outcome.decisions if d not in self.decisions]
        self.outcome, self.text = outcome, (text if outcome.action != "block" else None)


def _guard(item: Refinement, stage: str, call: Callable[[], Any]) -> Any:
    """Run a policy call; a crash must not fail open, so the item goes to review with the reason."""
    try:
        return call()
    except CaptionAgentError as exc:
        item.fail(exc, stage)
    except Exception as exc:  # noqa: BLE001 - recorded as a review decision, never swallowed
        item.decisions.append(
            PolicyDecision(rule=f"engine:{stage}", action="review", reason=f"policy crashed: {exc!r}")
        )
        item.finish(ModerationOutcome(action="review", text=""), None)
    return None


def sanitize(policy: Any, items: Sequence[Refinement]) -> None:
    """Mask PII and cut instruction-like text out of each item's facts and image text before any prompt."""
    for item in items:
        with StageTimer([item], "sanitize"):
            ctx = item.ctx
            ctx.facts, ctx.image_text = list(item.job.facts), item.job.image_text
            prepared = _guard(
                item, "sanitize", lambda: policy.prepare_inputs(list(item.job.facts), item.job.image_text, ctx)
            )
        if prepared is None:
            continue
        facts, image_text, decisions = prepared
        item.job = replace(item.job, facts=list(facts), image_text=image_text)
        ctx.facts, ctx.image_text = list(facts), image_text
        item.decisions += decisions


def run(refiner: Any, policy: Any, items: Sequence[Refinement], max_regenerations: int) -> None:
    """Settle every item: sanitize, then up to ``max_regenerations + 1`` refine/moderate rounds, then fallback."""
    sanitize(policy, items)
    attempts = max_regenerations + 1
    pending = [i for i in items if not i.settled]
    for attempt in range(attempts):
        if not pending or refiner is None:
            break
        with StageTimer(pending, "refine"):
            try:
                outputs = list(refiner.refine_many([i.job for i in pending]))
            except Exception as exc:  # noqa: BLE001 - a refiner that breaks its contract fails these items only
                outputs = [exc] * len(pending)
        if len(outputs) != len(pending):  # never publish a draft for a job the refiner did not answer
            missing = ModelOutputError(f"the refiner answered {len(outputs)} of {len(pending)} jobs")
            outputs = [*outputs[: len(pending)], *[missing] * (len(pending) - len(outputs))]
        retry = []
        for item, out in zip(pending, outputs):
            left = attempts - attempt - 1
            item.provenance.refiner, item.provenance.refiner_model = refiner.name, refiner.model_id
            item.provenance.refine_attempts = attempt + 1
            if isinstance(out, BackendError) and not isinstance(out, ModelOutputError):
                item.fail(out, "refine")  # the server is down after its retries: retryable, never a silent fallback
            elif isinstance(out, BaseException):
                # An unusable answer (or a refiner bug) costs an attempt; the next one is told why.
                item.provenance.fallbacks.append(f"refine attempt {attempt + 1}: {out}")
                if left > 0 and isinstance(out, ModelOutputError):
                    item.job = replace(
                        item.job, feedback=[f"your previous answer was unusable ({out}); answer as instructed"]
                    )
                    retry.append(item)
                else:
                    _fall_back(policy, item, out)
            else:
                item.facts_used = list(out.facts_used)
                if _moderate(policy, item, out.caption, left):
                    retry.append(item)
        pending = retry
    for item in items:
        if not item.settled:  # no refiner configured
            item.provenance.fallbacks.append("refine: no refiner configured")
            _fall_back(policy, item, None)


def _moderate(policy: Any, item: Refinement, text: str, attempts_left: int) -> bool:
    """Review refined text; True when the item should be regenerated with the policy's feedback."""
    item.ctx.attempts_left, item.ctx.is_fallback = attempts_left, False
    with StageTimer([item], "moderate"):
        outcome = _guard(item, "moderate", lambda: policy.review(text, item.ctx))
    if outcome is None:
        return False
    if outcome.action == "regenerate" and attempts_left > 0:
        item.decisions += outcome.decisions
        item.job = replace(item.job, feedback=list(outcome.feedback))
        return True
    # The engine moderates the draft itself when a rule asks for a fallback ("pass": "draft" decisions).
    drafted = any(d.details.get("pass") == "draft" for d in outcome.decisions)
    if not item.fallback_ok and outcome.action != "block" and (drafted or outcome.action in ("fallback", "regenerate")):
        # The draft is in another language: a person decides on the rejected answer instead, as moderated text
        # (redactions applied: a reviewer's approval publishes it as it stands).
        item.provenance.fallbacks.append(f"policy: {outcome.action}; the draft cannot stand in, held for review")
        _hold(policy, item, outcome, text)
        return False
    if outcome.action in ("fallback", "regenerate"):
        item.provenance.fallbacks.append(f"policy: {outcome.action} after {item.provenance.refine_attempts} attempt(s)")
        if outcome.action == "fallback":  # the engine already moderated the draft into outcome.text
            item.finish(outcome, outcome.text)
        else:
            item.decisions += outcome.decisions
            _fall_back(policy, item, None)
        return False
    item.finish(outcome, outcome.text)
    return False


def _hold(policy: Any, item: Refinement, outcome: ModerationOutcome, text: str) -> None:
    """Send the rejected answer to review with every fix the policy makes to it (never the raw answer)."""
    item.ctx.attempts_left, item.ctx.is_fallback = 0, True  # no second draft pass; fixes in place only
    held = _guard(item, "moderate", lambda: policy.review(text, item.ctx))
    if held is None:
        return
    marked = [d.model_copy(update={"details": {**d.details, "pass": "held"}}) for d in held.decisions]
    action = "block" if held.action == "block" else "review"
    item.finish(outcome.model_copy(update={"action": action, "decisions": outcome.decisions + marked}), held.text)


def _fall_back(policy: Any, item: Refinement, cause: BaseException | None) -> None:
    """Use the draft, still moderated (redactions apply; regenerate is impossible), when it can stand in."""
    if not item.fallback_ok:
        item.fail(cause or ModelOutputError("no refined text and the draft cannot stand in for it"), "refine")
        return
    item.ctx.attempts_left, item.ctx.is_fallback = 0, True
    with StageTimer([item], "moderate"):
        outcome = _guard(item, "moderate", lambda: policy.review(item.job.draft, item.ctx))
    if outcome is not None:
        item.finish(outcome, outcome.text)
