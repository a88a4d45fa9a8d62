"""Reviewers' verdicts on queued results: read, appended one per item, checked, and applied to a results file.

``import_decisions`` applies verdicts to a results file and writes a new one; edited text is checked again by the
safety rules (PII, blocklist, injection, style, markup) before it is accepted. ``check_edit`` is that check; the
service's /review page runs it too, before it appends an edit. Markup is never published: an edit with markup is
refused, not stripped, and an approval of a caption with markup is held.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from caption_agent.errors import CaptionAgentError, PolicyError
from caption_agent.policies.review import ReviewQueue, first_error, read_results, review_id
from caption_agent.policies.rules.markup import find_markup
from caption_agent.schemas import CaptionResult, PolicyDecision

# Every rule that checks the agent's own output, except the two that judge the model rather than the text:
# confidence (the model's certainty) and grounding (claims against the model's draft: the reviewer looking at
# the photo is the evidence the draft stood in for).
RECHECK_RULES = frozenset({"pii", "blocklist", "injection", "style", "markup", "language", "people"})


class ReviewDecision(BaseModel):
    """A reviewer's verdict on one queued result."""

    model_config = ConfigDict(extra="forbid")

    review_id: str = Field(min_length=8, max_length=64)
    verdict: Literal["approve", "edit", "reject", "undo"] = Field(
        description="'undo' withdraws the item's live verdict (it waits for review again)."
    )
    text: str | None = Field(None, max_length=5000, description="The corrected caption (verdict 'edit').")
    reviewer: str = Field("", max_length=120)
    note: str = Field("", max_length=2000)
    at: str | None = Field(None, max_length=40, description="When the verdict was given (ISO 8601, UTC).")

    @model_validator(mode="after")
    def _edit_has_text(self) -> ReviewDecision:
        if self.verdict == "edit" and not (self.text and self.text.strip()):
            raise ValueError("verdict 'edit' needs the corrected caption in 'text'")
        return self


def decision_line(decision: ReviewDecision) -> str:
    return decision.model_dump_json(exclude_none=True) + "\n"


def read_decisions(path: Path | str) -> dict[str, ReviewDecision]:
    """Live verdicts from a JSONL file: plain ReviewDecision lines, or queue lines whose ``decision`` is filled;
    an 'undo' line withdraws the verdict before it."""
    out: dict[str, ReviewDecision] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "result" in data:  # a queue line edited in place
                if not data.get("decision"):
                    continue
                data = {"review_id": data.get("review_id"), **data["decision"]}
            decision = ReviewDecision.model_validate(data)
        except (json.JSONDecodeError, ValidationError) as exc:
            raise PolicyError(
                f"decisions file {str(path)!r} line {n} is invalid: {first_error(exc)}",
                fix="each line needs review_id, verdict (approve|edit|reject|undo), and text for 'edit'.",
            ) from None
        if decision.verdict == "undo":
            out.pop(decision.review_id, None)
            continue
        if decision.review_id in out:
            raise PolicyError(
                f"decisions file {str(path)!r} line {n}: a second verdict for {decision.review_id}.",
                fix="keep one verdict per review_id.",
            )
        out[decision.review_id] = decision
    return out


def append_decision(path: Path | str, decision: ReviewDecision) -> None:
    """Append one verdict to a decisions JSONL file (what `caption-agent review import` reads); one per id."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file() and decision.review_id in read_decisions(path):
            raise PolicyError(
                f"{decision.review_id} already has a verdict in {str(path)!r}.",
                fix="keep one verdict per review_id; edit the decisions file to change it.",
            )
        with path.open("a", encoding="utf-8") as fh:
            fh.write(decision_line(decision))
            fh.flush()
            os.fsync(fh.fileno())


def pending_items(queue: Path | str, decisions: Path | str | None = None) -> list[dict[str, Any]]:
    """Queue items that have no verdict yet (neither filled in the queue line nor in the decisions file)."""
    decided = set(read_decisions(decisions)) if decisions is not None and Path(decisions).is_file() else set()
    return [
        item for item in ReviewQueue(queue).items() if not item.get("decision") and item.get("review_id") not in decided
    ]


# What a reviewer can change when a re-checked rule objects to their edit (the rule's reason says where).
EDIT_FIXES = {
    "pii": "remove the personal data (email address, phone number, URL, IBAN, card number or street address)",
    "blocklist": "remove the blocked word or topic",
    "injection": "remove the instruction-like text; a caption describes the image, it gives no orders",
    "style": "follow the style preset (length, banned openings and phrases)",
    "markup": "write plain text: remove the HTML tags, HTML entities (&amp; -> &) and markdown links",
    "language": "write the caption in the item's language (its locale); a translation of the draft is fine",
    "people": 'describe people neutrally ("a person"), without gender, age or identity the photo cannot show',
}


@dataclass
class EditCheck:
    """The safety re-check of a reviewer's edited caption (RECHECK_RULES only)."""

    text: str  # the edit as the policy would publish it (PII masked, trimmed, ...)
    action: str  # the strongest action of the re-checked rules
    decisions: list[PolicyDecision]  # every decision, marked ``details.pass = "human_edit"``

    @property
    def failing(self) -> list[PolicyDecision]:
        """The decisions that object to the edit as typed (any action but allow)."""
        return [d for d in self.decisions if d.action != "allow"]

    @property
    def publishable(self) -> bool:
        """True when the policy accepts the edit, possibly fixed: publish ``text``."""
        return self.action in ("allow", "redact")

    def message(self) -> str:
        return "; ".join(f"{d.rule} ({d.action}): {d.reason}" for d in self.failing)

    def fix(self) -> str:
        rules = dict.fromkeys(d.rule for d in self.failing)
        return "; ".join(EDIT_FIXES.get(rule, f"change the caption so that rule {rule!r} passes") for rule in rules)


def recheck_rules(result: CaptionResult) -> frozenset[str]:
    """The rules an edit of ``result`` is re-checked by: RECHECK_RULES, less `people` when no face count is known
    (that rule would hold every edit then; the reviewer judging the photo is the check it stands in for)."""
    faces = result.image.faces if result.image else None
    return RECHECK_RULES if faces is not None else RECHECK_RULES - {"people"}


def check_edit(result: CaptionResult, text: str, engine: Any) -> EditCheck:
    """Re-check a reviewer's ``text`` for queued ``result`` with ``engine`` (a PolicyEngine) before it counts.

    Runs RECHECK_RULES (PII, blocklist, injection, style, markup, language, people) in the result's style,
    locale, draft and facts, as the last pass (no regeneration left); markup is refused (the policy's
    ``markup.on_edit``), not stripped. Used by `review import` and by the service's /review page."""
    text = text.strip()
    outcome = engine.review(text, _context(result, engine), only=recheck_rules(result))
    decisions = [d.model_copy(update={"details": {**d.details, "pass": "human_edit"}}) for d in outcome.decisions]
    return EditCheck(text=outcome.text, action=outcome.action, decisions=decisions)


def suggest_fix(result: CaptionResult, check: EditCheck, engine: Any) -> str | None:
    """The fixed text of a refused edit (PII masked, trimmed, opening cut) if it passes every re-checked rule
    itself; None when no rule could fix the edit or the fix still fails."""
    if not check.publishable or check.text == "" or not check.failing:
        return None
    again = check_edit(result, check.text, engine)
    return check.text if not again.failing else None


@dataclass
class ImportReport:
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    held: list[str] = field(default_factory=list)  # edits the safety re-check refused, approvals of markup
    unmatched: list[str] = field(default_factory=list)  # verdicts for ids not in the results

    def summary(self) -> str:
        return (
            f"{self.approved} approved, {self.edited} edited, {self.rejected} rejected, "
            f"{len(self.held)} edit(s) held for review, {len(self.unmatched)} unmatched verdict(s)"
        )


def import_decisions(
    decisions: Path | str, results: Path | str, out: Path | str, engine: Any = None, recheck: bool = True
) -> ImportReport:
    """Apply reviewers' verdicts to ``results`` and write every result to ``out`` (JSONL)."""
    verdicts = read_decisions(decisions)
    rows = read_results(results)
    report = ImportReport()
    seen: set[str] = set()
    if recheck and engine is None:
        from caption_agent.policies.engine import PolicyEngine

        engine = PolicyEngine.load()
    updated = []
    for result in rows:
        rid = review_id(result)
        verdict = verdicts.get(rid)
        if verdict is not None:
            seen.add(rid)
            result = _apply(result, verdict, engine if recheck else None, report)
        updated.append(result)
    report.unmatched = sorted(set(verdicts) - seen)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for result in updated:
            fh.write(result.model_dump_json(exclude_none=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(out)
    return report


def _apply(result: CaptionResult, verdict: ReviewDecision, engine: Any, report: ImportReport) -> CaptionResult:
    who = verdict.reviewer or "a reviewer"
    note = f": {verdict.note}" if verdict.note else ""
    if verdict.verdict == "reject":
        report.rejected += 1
        decision = PolicyDecision(rule="human_review", action="block", reason=f"rejected by {who}{note}")
        return result.model_copy(
            update={"status": "blocked", "text": None, "decision": "block", "decisions": [*result.decisions, decision]}
        )
    if verdict.verdict == "approve":
        if result.text is None:
            raise CaptionAgentError(
                f"result {review_id(result)} has no text to approve.",
                fix="use verdict 'edit' with the caption text, or 'reject'.",
            )
        markup = find_markup(result.text)
        if markup:  # a caption stored with markup (older policy, markup rule off) is not published by approval
            reason = f"approval by {who} held: the caption contains markup ({', '.join(markup)}); "
            reason += EDIT_FIXES["markup"]
            return _hold(result, reason + note, [], report)
        report.approved += 1
        decision = PolicyDecision(rule="human_review", action="allow", reason=f"approved by {who}{note}")
        return result.model_copy(
            update={"status": "ok", "decision": "allow", "decisions": [*result.decisions, decision]}
        )
    text = verdict.text.strip() if verdict.text else ""
    checks: list[PolicyDecision] = []
    if engine is not None:
        check = check_edit(result, text, engine)
        checks = check.decisions
        if not check.publishable:
            reason = f"edit by {who} failed the safety re-check: {check.message()}; {check.fix()}; still in review"
            # check.text, not the edit as typed: the PII the re-check masked stays out of the record.
            return _hold(result, reason + note, checks, report, after=check.text[:500])
        text = check.text
    elif markup := find_markup(text):  # without the re-check, markup is still never published
        reason = f"edit by {who} contains markup ({', '.join(markup)}); {EDIT_FIXES['markup']}"
        return _hold(result, reason + note, checks, report)
    report.edited += 1
    decision = PolicyDecision(
        rule="human_review", action="redact", reason=f"edited by {who}{note}", before=result.text, after=text
    )
    return result.model_copy(
        update={"status": "ok", "text": text, "decision": "allow", "decisions": [*result.decisions, *checks, decision]}
    )


def _hold(
    result: CaptionResult, reason: str, checks: list[PolicyDecision], report: ImportReport, after: str | None = None
) -> CaptionResult:
    """Keep ``result`` in review with the reason a verdict could not be applied."""
    report.held.append(review_id(result))
    decision = PolicyDecision(rule="human_review", action="review", reason=reason, after=after)
    return result.model_copy(
        update={"status": "review", "decision": "review", "decisions": [*result.decisions, *checks, decision]}
    )


def _context(result: CaptionResult, engine: Any) -> Any:
    from caption_agent.policies.context import ModerationContext
    from caption_agent.prompts import load_preset

    return ModerationContext(
        preset=load_preset(result.style),
        locale=result.locale,
        draft=result.draft or "",
        facts=list(result.facts),
        faces=result.image.faces if result.image else None,
        attempts_left=0,
        is_fallback=True,
        human_edit=True,
    )
