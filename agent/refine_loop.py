"""The one refine -> moderate -> regenerate -> fallback loop, used by the caption pipeline and localization.

Each ``Refinement`` is one text to write. The loop vets its untrusted inputs, asks the refiner for every pending
item at once (batched, concurrent on servers), moderates each answer, regenerates with the policy's feedback while
attempts are left, and settles every item on exactly one ending:

* ``outcome`` set: publish ``outcome.text`` under ``outcome.action`` (allow/redact/fallback -> ok, review, block);
* ``error`` set: the item failed in a way a retry may fix (the refiner's server is down, or no answer was usable
  and the draft cannot stand in) and becomes an error record.

The refiner is a chain (``refiners.chain``): the primary (an LLM), then its fallbacks (the template refiner),
then the draft. Each link refines, is moderated and regenerates on its own; an answer that is unusable or not
publishable after its attempts (fallback, regenerate or review; never block) passes the item to the next link.
The last refiner link settles as a single refiner always has. Provenance ``refined_by`` names the link that wrote
the text.

The draft stands in for the refined text (moderated again, as a fallback) only when ``fallback_ok``: a ranked
draft in the target language can; a source caption being localized into another language cannot, so such items
go to review (a rejected answer; or no text, with the reason, when a link said which data it lacked) or fail (no
usable answer) instead of publishing the wrong language.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from caption_agent.errors import BackendError, CaptionAgentError, ModelOutputError
from caption_agent.refiners.base import RefineJob
from caption_agent.refiners.chain import CannotComposeError, as_chain
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
    # Set while walking the chain: a link's answer the policy rejected (outcome, text, link), and a link's
    # statement of the data it lacked; used when no later link publishes and the draft cannot stand in.
    rejected: tuple[ModerationOutcome, str, str] | None = None
    gap: CannotComposeError | None = None
    models: dict[str, str] = field(default_factory=dict)  # link name -> model id, of the links that ran

    @property
    def settled(self) -> bool:
        return self.outcome is not None or self.error is not None

    def record(self, decisions: Sequence[PolicyDecision]) -> None:
        """Add decisions, each once: a rule that says the same on every attempt is recorded one time."""
        self.decisions += [d for d in decisions if d not in self.decisions]

    def fail(self, exc: BaseException, stage: str) -> None:
        self.error, self.error_stage = exc, stage

    def finish(self, outcome: ModerationOutcome, text: str | None, by: str = "") -> None:
        """Settle on ``outcome``; ``by`` is the link that wrote ``text`` (provenance ``refined_by``)."""
        self.record(outcome.decisions)
        self.outcome, self.text = outcome, (text if outcome.action != "block" else None)
        self.provenance.refined_by = by if self.text is not None else ""
        if self.text is not None and by in self.models:  # the link that wrote the text, not the last one tried
            self.provenance.refiner, self.provenance.refiner_model = by, self.models[by]


def guard_policy(item: Any, stage: str, call: Callable[[], Any], review: Callable[[ModerationOutcome], None]) -> Any:
    """Run a policy call for ``item`` (anything with ``fail`` and ``decisions``) and return its answer, or None.

    A crash must not fail open: a CaptionAgentError fails the item at ``stage``; any other exception is recorded as
    an ``engine:<stage>`` review decision with the reason, and ``review`` settles the item on that outcome."""
    try:
        return call()
    except CaptionAgentError as exc:
        item.fail(exc, stage)
    except Exception as exc:  # noqa: BLE001 - recorded as a review decision, never swallowed
        item.decisions.append(
            PolicyDecision(rule=f"engine:{stage}", action="review", reason=f"policy crashed: {exc!r}")
        )
        review(ModerationOutcome(action="review", text=""))
    return None


def _guard(item: Refinement, stage: str, call: Callable[[], Any]) -> Any:
    return guard_policy(item, stage, call, lambda outcome: item.finish(outcome, None))


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
        from caption_agent.policies.rules.glossary import refine_terms

        glossary, constraints = refine_terms(policy, ctx)
        item.job = replace(item.job, glossary=glossary, constraints=constraints)
        item.record(decisions)
        if item.job.old_caption:  # a dataset row's caption: cleaned the same way, context only (never a fact)
            old = item.job.old_caption
            cleaned = _guard(item, "sanitize", lambda: policy.clean_text(old, "existing caption", ctx))
            if cleaned is None:
                continue
            item.job = replace(item.job, old_caption=cleaned[0])
            item.record(cleaned[1])


def run(refiner: Any, policy: Any, items: Sequence[Refinement], max_regenerations: int) -> None:
    """Settle every item: sanitize, then walk the refiner chain (a ``RefinerChain``, one refiner, or None): each
    link gets up to ``max_regenerations + 1`` refine/moderate rounds (one for deterministic links), and what it
    cannot settle goes on to the next link, then to the draft."""
    sanitize(policy, items)
    chain = as_chain(refiner)
    for item in items:
        item.fallback_ok = item.fallback_ok and chain.draft
    pending = [i for i in items if not i.settled]
    for index, link in enumerate(chain.links):
        if not pending:
            break
        attempts = 1 if getattr(link, "deterministic", False) else max_regenerations + 1
        pending = _run_link(link, policy, pending, attempts, last=index == len(chain.links) - 1)
        for item in pending:  # the next link starts afresh: no feedback meant for another model
            item.job = replace(item.job, feedback=[])
    for item in items:
        if not item.settled:  # no refiner configured
            item.provenance.fallbacks.append("refine: no refiner configured")
            if not item.fallback_ok and item.gap is None:  # nothing can write this language: a person decides
                lang = item.job.locale
                item.gap = CannotComposeError(
                    f"no refiner is configured and the English draft cannot stand in for {lang}"
                )
            _fall_back(policy, item, None)


def _run_link(link: Any, policy: Any, items: list[Refinement], attempts: int, last: bool) -> list[Refinement]:
    """Refine, moderate and regenerate ``items`` with one link. The last link settles every item as the loop always
    has (the draft stands in, or the item is held or fails); another returns the items it could not settle."""
    pending, through = list(items), []
    for attempt in range(attempts):
        if not pending:
            break
        with StageTimer(pending, "refine"):
            try:
                outputs = list(link.refine_many([i.job for i in pending]))
            except Exception as exc:  # noqa: BLE001 - a refiner that breaks its contract fails these items only
                outputs = [exc] * len(pending)
        if len(outputs) != len(pending):  # never publish a draft for a job the refiner did not answer
            missing = ModelOutputError(f"the refiner answered {len(outputs)} of {len(pending)} jobs")
            outputs = [*outputs[: len(pending)], *[missing] * (len(pending) - len(outputs))]
        retry = []
        for item, out in zip(pending, outputs):
            left = attempts - attempt - 1
            item.provenance.refiner, item.provenance.refiner_model = link.name, link.model_id
            item.models[link.name] = link.model_id
            item.provenance.refine_attempts += 1
            if isinstance(out, BackendError) and not isinstance(out, ModelOutputError):
                item.fail(out, "refine")  # the server is down after its retries: retryable, never a silent fallback
            elif isinstance(out, BaseException):
                # An unusable answer (or a refiner bug) costs an attempt; the next one is told why.
                item.provenance.fallbacks.append(f"refine attempt {attempt + 1} ({link.name}): {out}")
                if isinstance(out, CannotComposeError):
                    item.gap = out
                if left > 0 and isinstance(out, ModelOutputError) and not isinstance(out, CannotComposeError):
                    item.job = replace(
                        item.job, feedback=[f"your previous answer was unusable ({out}); answer as instructed"]
                    )
                    retry.append(item)
                elif last:
                    _fall_back(policy, item, out)
                else:
                    through.append(item)
            else:
                item.facts_used = list(out.facts_used)
                item.provenance.fallbacks += [n for n in out.notes if n.startswith("locale:")]
                verdict = _moderate(policy, item, out.caption, left, link.name, last)
                if verdict == "retry":
                    retry.append(item)
                elif verdict == "next":
                    through.append(item)
        pending = retry
    return through


def _moderate(policy: Any, item: Refinement, text: str, attempts_left: int, by: str, last: bool = True) -> str:
    """Review the text link ``by`` wrote: "retry" (regenerate with the policy's feedback), "next" (not publishable:
    the next link of the chain tries; never after a block) or "done" (settled)."""
    item.ctx.attempts_left, item.ctx.is_fallback = attempts_left, False
    with StageTimer([item], "moderate"):
        outcome = _guard(item, "moderate", lambda: policy.review(text, item.ctx))
    if outcome is None:
        return "done"
    if outcome.action == "regenerate" and attempts_left > 0:
        item.record(outcome.decisions)
        item.job = replace(item.job, feedback=list(outcome.feedback))
        return "retry"
    if not last and outcome.action in ("fallback", "regenerate", "review"):
        # The next link writes before the draft; the engine's own draft pass is not used.
        item.record([d for d in outcome.decisions if d.details.get("pass") != "draft"])
        item.provenance.fallbacks.append(f"policy: {outcome.action} on the {by} answer; the next refiner writes")
        item.rejected = (outcome, text, by)
        return "next"
    # The engine moderates the draft itself when a rule asks for a fallback ("pass": "draft" decisions).
    drafted = any(d.details.get("pass") == "draft" for d in outcome.decisions)
    if not item.fallback_ok and outcome.action != "block" and (drafted or outcome.action in ("fallback", "regenerate")):
        # The draft is in another language: a person decides on the rejected answer instead, as moderated text
        # (redactions applied: a reviewer's approval publishes it as it stands).
        item.provenance.fallbacks.append(f"policy: {outcome.action}; the draft cannot stand in, held for review")
        _hold(policy, item, outcome, text, by)
        return "done"
    if outcome.action in ("fallback", "regenerate"):
        item.provenance.fallbacks.append(f"policy: {outcome.action} after {item.provenance.refine_attempts} attempt(s)")
        if outcome.action == "fallback":  # the engine already moderated the draft into outcome.text
            item.finish(outcome, outcome.text, "draft")
        else:
            item.record(outcome.decisions)
            _fall_back(policy, item, None)
        return "done"
    item.finish(outcome, outcome.text, by)
    return "done"


def _hold(policy: Any, item: Refinement, outcome: ModerationOutcome, text: str, by: str) -> None:
    """Send the rejected answer to review with every fix the policy makes to it (never the raw answer)."""
    item.ctx.attempts_left, item.ctx.is_fallback = 0, True  # no second draft pass; fixes in place only
    held = _guard(item, "moderate", lambda: policy.review(text, item.ctx))
    if held is None:
        return
    marked = [d.model_copy(update={"details": {**d.details, "pass": "held"}}) for d in held.decisions]
    action = "block" if held.action == "block" else "review"
    item.finish(outcome.model_copy(update={"action": action, "decisions": outcome.decisions + marked}), held.text, by)


def _fall_back(policy: Any, item: Refinement, cause: BaseException | None) -> None:
    """Use the draft, still moderated (redactions apply; regenerate is impossible), when it can stand in. When it
    cannot: an earlier link's rejected answer is held for review, else a link that said which data is missing
    sends the item to review with that reason (no text), else the item fails (retryable)."""
    if not item.fallback_ok:
        if item.rejected is not None:
            outcome, text, by = item.rejected
            item.provenance.fallbacks.append(f"the draft cannot stand in; the {by} answer is held for review")
            _hold(policy, item, outcome, text, by)
        elif item.gap is not None:
            reason = item.gap.reason
            decision = PolicyDecision(rule="refiner", action="review", reason=reason)
            item.finish(ModerationOutcome(action="review", text="", decisions=[decision]), None)
        else:
            item.fail(
                cause
                or ModelOutputError(
                    "no usable refined text, and the English draft cannot stand in for this locale",
                    fix="retry the item (--retry-errors), add the template refiner to refiner.fallbacks, or use a "
                    "stronger refiner model.",
                ),
                "refine",
            )
        return
    item.ctx.attempts_left, item.ctx.is_fallback = 0, True
    with StageTimer([item], "moderate"):
        outcome = _guard(item, "moderate", lambda: policy.review(item.job.draft, item.ctx))
    if outcome is not None:
        item.finish(outcome, outcome.text, "draft")
