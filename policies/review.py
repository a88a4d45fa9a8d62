"""Human review queue: results a person must look at go to a JSONL file; their verdicts come back in.

Each queue line carries everything a reviewer needs (caption, draft, candidates, facts, every decision with its
reason, confidence, image hash and source) plus an empty ``decision`` for the reviewer to fill in:
``{"verdict": "approve" | "edit" | "reject", "text": "...", "reviewer": "...", "note": "..."}``.
``import_decisions`` applies verdicts to a results file and writes a new one; edited text is checked again
by the safety rules (PII, blocklist, injection, style) before it is accepted. ``check_edit`` is that check;
the service's /review page runs it too, before it appends an edit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from caption_agent.errors import CaptionAgentError, PolicyError
from caption_agent.schemas import CaptionResult, PolicyDecision

log = logging.getLogger(__name__)

RECHECK_RULES = frozenset({"pii", "blocklist", "injection", "style"})


class ReviewDecision(BaseModel):
    """A reviewer's verdict on one queued result."""

    model_config = ConfigDict(extra="forbid")

    review_id: str = Field(min_length=8, max_length=64)
    verdict: Literal["approve", "edit", "reject"]
    text: str | None = Field(None, max_length=5000, description="The corrected caption (verdict 'edit').")
    reviewer: str = Field("", max_length=120)
    note: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _edit_has_text(self) -> ReviewDecision:
        if self.verdict == "edit" and not (self.text and self.text.strip()):
            raise ValueError("verdict 'edit' needs the corrected caption in 'text'")
        return self


def review_id(result: CaptionResult) -> str:
    """Stable id of a result: same item, style and locale -> same id, across runs."""
    image = result.image.sha256 if result.image else ""
    raw = f"{result.key or ''}|{image}|{result.style}|{result.locale}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def needs_review(result: CaptionResult, threshold: float | None = None) -> bool:
    """True for results a person must see: status or decision 'review', or confidence under ``threshold``."""
    if result.status == "review" or result.decision == "review":
        return True
    return threshold is not None and result.confidence is not None and result.confidence < threshold


def queue_item(result: CaptionResult) -> dict[str, Any]:
    """One queue line: the reasons first, then the whole result, then an empty decision."""
    reasons = [f"{d.rule}: {d.action}: {d.reason}" for d in result.decisions if d.action != "allow"]
    if not reasons and result.confidence is not None:
        reasons.append(f"confidence {result.confidence:.2f}")
    return {
        "review_id": review_id(result),
        "queued_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "key": result.key,
        "image": result.image.source if result.image else None,
        "reasons": reasons,
        "text": result.text,
        "draft": result.draft,
        "candidates": [c.text for c in result.candidates],
        "result": result.model_dump(mode="json", exclude_none=True),
        "decision": None,
    }


class ReviewQueue:
    """An append-only JSONL review queue, safe for several writer processes (file lock + fsync).

    Each result is queued once. The ids already queued live in a SQLite index next to the queue
    (``<queue>.ids.sqlite``), so ``add`` looks one id up instead of re-reading a queue that only grows; SQLite
    (standard library) answers that lookup without loading every id, which a plain-text id list could not.
    The queue stays the record: the index notes how many bytes of it it covers and catches up when it is
    missing, unreadable or behind (lines written by a crashed or older writer), and rebuilds itself when the
    queue was rewritten by hand. A malformed queue line is logged with its line number and skipped.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.index_path = Path(str(self.path) + ".ids.sqlite")

    def ids(self) -> set[str]:
        return {item["review_id"] for item in self.items()}

    def __contains__(self, review_id: object) -> bool:
        """True when ``review_id`` is queued (an index lookup, under the queue's lock)."""
        from filelock import FileLock

        if not isinstance(review_id, str) or not self.path.is_file():
            return False
        with FileLock(str(self.path) + ".lock"), self._index() as db:
            return _queued(db, review_id)

    def items(self) -> Iterator[dict[str, Any]]:
        """Queue items in order; malformed lines are logged (file and line number) and skipped."""
        if not self.path.is_file():
            return
        with self.path.open("rb") as fh:
            for _, _, item in _scan(fh, self.path, 0):
                yield item

    def add(self, result: CaptionResult) -> str:
        """Queue one result (once: a result already queued is not added again); returns its review id."""
        return self._add(result)[0]

    def _add(self, result: CaptionResult) -> tuple[str, bool]:
        """(review id, True when queued now)."""
        from filelock import FileLock

        item = queue_item(result)
        rid = item["review_id"]
        line = (json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"), self._index() as db:
            if _queued(db, rid):
                return rid, False
            with self.path.open("ab") as fh:
                start = fh.tell()
                if start and _last_byte(self.path, start) != b"\n":
                    fh.write(b"\n")  # a torn last line (a writer that died mid-line) stays alone on its line
                    start += 1
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            # Queue first, index second: a crash in between leaves the index behind, which _index() repairs.
            _record(db, [(rid, start, start + len(line))], start + len(line))
        return rid, True

    @contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        """The id index, caught up with the queue. Call with the queue's lock held."""
        db = sqlite3.connect(self.index_path, timeout=30)
        try:
            try:
                self._catch_up(db)
            except sqlite3.DatabaseError as exc:  # a damaged index is rebuilt: the queue is the record
                log.warning(
                    "review queue index %s is unreadable (%s); rebuilding it from the queue", self.index_path, exc
                )
                db.close()
                self.index_path.unlink(missing_ok=True)
                db = sqlite3.connect(self.index_path, timeout=30)
                self._catch_up(db)
            yield db
        finally:
            db.close()

    def _catch_up(self, db: sqlite3.Connection) -> None:
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS ids (review_id TEXT PRIMARY KEY)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        size = self.path.stat().st_size if self.path.is_file() else 0
        covered, last = _meta(db)
        if covered > size or (last is not None and not self._still_at(*last)):
            log.warning(
                "review queue %s changed under its index (rewritten or edited); rebuilding the index", self.path
            )
            covered = 0
        elif covered == size:
            return
        rows = []
        if size > covered:
            with self.path.open("rb") as fh:
                rows = [(item["review_id"], start, end) for start, end, item in _scan(fh, self.path, covered)]
        _record(db, rows, size, fresh=covered == 0)

    def _still_at(self, start: int, end: int, review_id: str) -> bool:
        """True when the last queue line the index recorded still sits at the same bytes (no hand edit)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(start)
                data = json.loads(fh.read(end - start))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("review_id") == review_id


def _meta(db: sqlite3.Connection) -> tuple[int, tuple[int, int, str] | None]:
    """(queue bytes the index covers, (start, end, review id) of the last line it recorded or None)."""
    meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
    last = (int(meta["last_start"]), int(meta["last_end"]), meta["last_id"]) if "last_id" in meta else None
    return int(meta.get("covered", 0)), last


def _queued(db: sqlite3.Connection, review_id: str) -> bool:
    return db.execute("SELECT 1 FROM ids WHERE review_id = ?", (review_id,)).fetchone() is not None


def _record(db: sqlite3.Connection, rows: list[tuple[str, int, int]], covered: int, fresh: bool = False) -> None:
    """Note queued lines (review id, start, end byte) and how far the queue is indexed, in one transaction;
    ``fresh`` replaces what the index held."""
    with db:
        if fresh:
            db.execute("DELETE FROM ids")
            db.execute("DELETE FROM meta")
        db.executemany("INSERT OR IGNORE INTO ids (review_id) VALUES (?)", [(rid,) for rid, _, _ in rows])
        meta = [("covered", str(covered))]
        if rows:
            rid, start, end = rows[-1]
            meta += [("last_start", str(start)), ("last_end", str(end)), ("last_id", rid)]
        db.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", meta)


def _last_byte(path: Path, size: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(size - 1)
        return fh.read(1)


def _scan(fh: BinaryIO, path: Path, offset: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(start, end, item) for each well-formed queue line from byte ``offset``; logs and skips the others."""
    fh.seek(offset)
    start = offset
    for n, raw in enumerate(fh, 1):
        end = start + len(raw)
        item = _parse(raw, path, f"line {n}" if offset == 0 else f"the line at byte {start}")
        if item is not None:
            yield start, end, item
        start = end


def _parse(raw: bytes, path: Path, where: str) -> dict[str, Any] | None:
    """One queue line as an item; None (with a warning) for a blank or malformed line."""
    if not raw.strip():
        return None
    try:
        item = json.loads(raw)
    except ValueError as exc:  # invalid JSON, a torn line, bytes that are not UTF-8
        log.warning("review queue %s %s is not JSON (%s); skipped", path, where, exc)
        return None
    if not isinstance(item, dict) or not isinstance(item.get("review_id"), str) or not item["review_id"]:
        log.warning("review queue %s %s is not a queue item (an object with a review_id); skipped", path, where)
        return None
    return item


def read_results(path: Path | str) -> list[CaptionResult]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(CaptionResult.model_validate_json(line))
        except ValidationError as exc:
            raise PolicyError(
                f"results file {str(path)!r} line {n} is not a CaptionResult: {exc}",
                fix="pass the JSONL written by `caption-agent caption` or a batch job.",
            ) from None
    return out


def export_reviews(results: Path | str, queue: Path | str, threshold: float | None = None) -> list[str]:
    """Queue every result in ``results`` that needs review; returns the ids queued now."""
    q = ReviewQueue(queue)
    added = []
    for result in read_results(results):
        if needs_review(result, threshold):
            rid, new = q._add(result)
            if new:
                added.append(rid)
    return added


def read_decisions(path: Path | str) -> dict[str, ReviewDecision]:
    """Verdicts from a JSONL file: plain ReviewDecision lines, or queue lines whose ``decision`` is filled."""
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
                f"decisions file {str(path)!r} line {n} is invalid: {exc}",
                fix="each line needs review_id, verdict (approve|edit|reject), and text for 'edit'.",
            ) from None
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
            fh.write(decision.model_dump_json(exclude_none=True) + "\n")
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
    "pii": "remove the personal data (email address, phone number, URL, card number or street address)",
    "blocklist": "remove the blocked word or topic",
    "injection": "remove the instruction-like text; a caption describes the image, it gives no orders",
    "style": "follow the style preset (length, banned openings and phrases)",
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


def check_edit(result: CaptionResult, text: str, engine: Any) -> EditCheck:
    """Re-check a reviewer's ``text`` for queued ``result`` with ``engine`` (a PolicyEngine) before it counts.

    Runs RECHECK_RULES (PII, blocklist, injection, style) in the result's style, locale, draft and facts, as
    the last pass (no regeneration left). Used by `review import` and by the service's /review page."""
    text = text.strip()
    outcome = engine.review(text, _context(result, engine), only=RECHECK_RULES)
    decisions = [d.model_copy(update={"details": {**d.details, "pass": "human_edit"}}) for d in outcome.decisions]
    return EditCheck(text=outcome.text, action=outcome.action, decisions=decisions)


@dataclass
class ImportReport:
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    held: list[str] = field(default_factory=list)  # edits the safety re-check did not accept
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
            report.held.append(review_id(result))
            decision = PolicyDecision(
                rule="human_review",
                action="review",
                reason=f"edit by {who} failed the safety re-check ({check.action}); still in review{note}",
                after=text[:500],
            )
            return result.model_copy(
                update={"status": "review", "decision": "review", "decisions": [*result.decisions, *checks, decision]}
            )
        text = check.text
    report.edited += 1
    decision = PolicyDecision(
        rule="human_review", action="redact", reason=f"edited by {who}{note}", before=result.text, after=text
    )
    return result.model_copy(
        update={"status": "ok", "text": text, "decision": "allow", "decisions": [*result.decisions, *checks, decision]}
    )


def _context(result: CaptionResult, engine: Any) -> Any:
    from caption_agent.policies.context import ModerationContext
    from caption_agent.prompts import load_preset

    return ModerationContext(
        preset=load_preset(result.style),
        locale=result.locale,
        draft=result.draft or "",
        facts=list(result.facts),
        attempts_left=0,
        is_fallback=True,
    )
