"""Human review queue: results a person must look at go to a JSONL file (``verdicts`` brings the answers back).

Each queue line carries everything a reviewer needs (caption, draft, candidates, facts, every decision with its
reason, confidence, image hash and source) plus an empty ``decision`` for the reviewer to fill in:
``{"verdict": "approve" | "edit" | "reject", "text": "...", "reviewer": "...", "note": "..."}``.
Each result is queued once, also with several processes appending: an SQLite index beside the queue remembers
the queued ids, so adding an item never re-reads the queue; malformed queue lines are reported and skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from pydantic import ValidationError

from caption_agent.errors import PolicyError
from caption_agent.schemas import CaptionResult

log = logging.getLogger(__name__)


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


def queue_item(result: CaptionResult, audit: bool = False) -> dict[str, Any]:
    """One queue line: the reasons first, then the whole result, then an empty decision. ``audit``: an ok result
    sampled for a person to check what the agent publishes on its own."""
    reasons = [f"{d.rule}: {d.action}: {d.reason}" for d in result.decisions if d.action != "allow"]
    if not reasons and result.confidence is not None:
        reasons.append(f"confidence {result.confidence:.2f}")
    if audit:
        reasons.insert(0, "audit: sampled from results published as ok")
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
        **({"audit": True} if audit else {}),
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
        self.path = Path(os.path.realpath(path))  # one lock and one index per file, whatever the spelling
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

    def add(self, result: CaptionResult, audit: bool = False) -> str:
        """Queue one result (once: a result already queued is not added again); returns its review id.
        ``audit``: an ok result sampled for an audit (see ``audit_sampled``)."""
        return self._add(result, audit)[0]

    def _add(self, result: CaptionResult, audit: bool = False) -> tuple[str, bool]:
        """(review id, True when queued now)."""
        from filelock import FileLock

        item = queue_item(result, audit)
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
    """Results from a JSONL file: CaptionResult lines (`caption`, batch jobs), or review queue lines, whose
    ``result`` is the queued result (so `review import` can be given the queue the service writes)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "review_id" in data and isinstance(data.get("result"), dict):
                data = data["result"]
            out.append(CaptionResult.model_validate(data))
        except (ValueError, ValidationError) as exc:
            raise PolicyError(
                f"results file {str(path)!r} line {n} is not a CaptionResult: {first_error(exc)}",
                fix="pass the JSONL written by `caption-agent caption`, a batch job, or the review queue.",
            ) from None
    return out


def first_error(exc: Exception) -> str:
    """One line for a file error: the first problem of a validation error and how many there are."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "line"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where}: {first.get('msg')}{more}"
    return str(exc).splitlines()[0]


def audit_sampled(result: CaptionResult, share: float) -> bool:
    """True for the ``share`` (0..1) of ok results sampled into the review desk as audit items; decided by the
    result's review id, so the same result is sampled the same way in every run and process."""
    if result.status != "ok" or share <= 0:
        return False
    return int(review_id(result)[:8], 16) / 0xFFFFFFFF < share


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
