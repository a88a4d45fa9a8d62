"""The review desk's index: a queue of thousands of items paged, filtered and claimed without re-reading it.

The queue JSONL and the decisions JSONL stay the record (`caption-agent review import` reads them); the desk keeps
a SQLite file beside the queue (``<queue>.desk.sqlite``) that catches up with both files from the bytes it has
already read, so a page of a 10,000-item queue is one indexed query and one item is one seek. Claims (an item
being judged by one reviewer) and the history of every verdict live there too. Verdicts are appended to the
decisions file first and read back into the index from it, so verdicts written by other processes or by hand
count the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from caption_agent.errors import PolicyError
from caption_agent.policies.review_text import edit_distance
from caption_agent.policies.verdicts import ReviewDecision, decision_line

log = logging.getLogger(__name__)

# Holds that bulk approval never includes: a person looks at each of these on its own.
SAFETY_RULES = frozenset({"image_safety", "pii", "injection"})
CLAIM_S = 120.0  # a claim lapses when its reviewer stops renewing it (closed tab, lost network)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (review_id TEXT PRIMARY KEY, seq INTEGER, start INTEGER, "end" INTEGER,
  queued_at TEXT, style TEXT, locale TEXT, drafter TEXT, refiner TEXT, tags TEXT, safety INTEGER, audit INTEGER,
  confidence REAL, has_text INTEGER, text TEXT, draft TEXT);
CREATE INDEX IF NOT EXISTS items_seq ON items (seq);
CREATE TABLE IF NOT EXISTS verdicts (review_id TEXT PRIMARY KEY, verdict TEXT, reviewer TEXT, at TEXT,
  after TEXT, distance INTEGER, words INTEGER);
CREATE TABLE IF NOT EXISTS history (n INTEGER PRIMARY KEY AUTOINCREMENT, review_id TEXT, action TEXT,
  reviewer TEXT, at TEXT, before TEXT, after TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS history_id ON history (review_id);
CREATE TABLE IF NOT EXISTS claims (review_id TEXT PRIMARY KEY, session TEXT, reviewer TEXT, until REAL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


class DeskConflictError(PolicyError):
    """The item has a verdict already, or another reviewer is judging it."""

    fix = "take the next item; the desk skips items other reviewers have open."


class DeskNotFoundError(PolicyError):
    fix = "reload the desk: the item is not in this review queue."


@dataclass
class DeskQuery:
    """Which items, in which order: every filter is optional; ``status`` pending|decided|audit|all."""

    status: Literal["pending", "decided", "audit", "all"] = "pending"
    rule: str | None = None  # a rule name or reason code (image_safety, pii, subject.unnamed, ...)
    style: str | None = None
    locale: str | None = None
    drafter: str | None = None
    refiner: str | None = None
    older_than_h: float | None = None
    newer_than_h: float | None = None
    sort: Literal["oldest", "newest", "confidence", "-confidence"] = "oldest"

    def where(self, session: str = "") -> tuple[str, list[Any]]:
        parts, args = ["1=1"], []
        if self.status in ("pending", "audit"):
            parts.append("v.review_id IS NULL")
            # Items another reviewer has open are not offered (claims lapse after CLAIM_S).
            parts.append(
                "NOT EXISTS (SELECT 1 FROM claims c WHERE c.review_id = i.review_id AND c.session != ? AND c.until > ?)"
            )
            args += [session, time.time()]
        if self.status == "audit":
            parts.append("i.audit = 1")
        elif self.status == "decided":
            parts.append("v.review_id IS NOT NULL")
        if self.rule:
            parts.append("i.tags LIKE ?")
            args.append(f"% {self.rule} %")
        for name in ("style", "locale", "drafter", "refiner"):
            value = getattr(self, name)
            if value:
                parts.append(f"i.{name} = ?")
                args.append(value)
        now = dt.datetime.now(dt.UTC)
        if self.older_than_h is not None:
            parts.append("i.queued_at <= ?")
            args.append(_iso(now - dt.timedelta(hours=self.older_than_h)))
        if self.newer_than_h is not None:
            parts.append("i.queued_at >= ?")
            args.append(_iso(now - dt.timedelta(hours=self.newer_than_h)))
        return " AND ".join(parts), args

    def order(self) -> str:
        return {
            "oldest": "i.seq ASC",
            "newest": "i.seq DESC",
            "confidence": "COALESCE(i.confidence, 2) ASC, i.seq ASC",
            "-confidence": "COALESCE(i.confidence, -1) DESC, i.seq ASC",
        }[self.sort]


class ReviewDesk:
    """Paged, filtered, claimed access to one review queue and its decisions file (see the module docstring)."""

    def __init__(self, queue: Path | str, decisions: Path | str) -> None:
        self.queue = Path(os.path.realpath(queue))
        self.decisions = Path(decisions)
        self.db_path = Path(str(self.queue) + ".desk.sqlite")

    # --- reading --------------------------------------------------------------------------------------------
    def page(self, query: DeskQuery, offset: int = 0, limit: int = 50, session: str = "") -> dict[str, Any]:
        """One page of item summaries, the total the filters match and the queue's waiting count."""
        where, args = query.where(session)
        sql = f"FROM items i LEFT JOIN verdicts v ON v.review_id = i.review_id WHERE {where}"
        with self._db() as db:
            total = db.execute(f"SELECT COUNT(*) {sql}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT i.review_id, i.queued_at, i.style, i.locale, i.drafter, i.refiner, i.tags, i.safety, "
                f"i.audit, i.confidence, i.text, v.verdict {sql} ORDER BY {query.order()} LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
            waiting = _waiting(db)
        keys = ("review_id", "queued_at", "style", "locale", "drafter", "refiner", "tags", "safety", "audit")
        items = []
        for row in rows:
            item = dict(zip(keys, row[:9]))
            item["tags"] = item["tags"].split()
            item["safety"], item["audit"] = bool(item["safety"]), bool(item["audit"])
            item.update(confidence=row[9], text=row[10], verdict=row[11])
            items.append(item)
        return {"total": total, "offset": offset, "waiting": waiting, "items": items}

    def facets(self) -> dict[str, list[str]]:
        """The values each filter can take in this queue (for the desk's filter menus)."""
        with self._db() as db:
            out = {
                name: [r[0] for r in db.execute(f"SELECT DISTINCT {name} FROM items WHERE {name} != '' ORDER BY 1")]
                for name in ("style", "locale", "drafter", "refiner")
            }
            tags = {t for (row,) in db.execute("SELECT DISTINCT tags FROM items") for t in row.split()}
        out["rule"] = sorted(tags)
        return out

    def waiting(self) -> int:
        with self._db() as db:
            return _waiting(db)

    def item(self, review_id: str) -> dict[str, Any]:
        """The whole queue line of ``review_id`` (one seek), with its verdict and claim, if any."""
        with self._db() as db:
            row = db.execute('SELECT start, "end" FROM items WHERE review_id = ?', (review_id,)).fetchone()
            if row is None:
                raise DeskNotFoundError(f"{review_id} is not in the review queue {str(self.queue)!r}.")
            verdict = db.execute("SELECT verdict, reviewer, at FROM verdicts WHERE review_id = ?", (review_id,))
            decided = verdict.fetchone()
            claim = db.execute(
                "SELECT reviewer, session FROM claims WHERE review_id = ? AND until > ?", (review_id, time.time())
            ).fetchone()
        with self.queue.open("rb") as fh:
            fh.seek(row[0])
            item: dict[str, Any] = json.loads(fh.read(row[1] - row[0]))
        item["verdict"] = dict(zip(("verdict", "reviewer", "at"), decided)) if decided else None
        item["claim"] = {"reviewer": claim[0], "session": claim[1]} if claim else None
        return item

    def history(self, review_id: str) -> list[dict[str, Any]]:
        """Every verdict and undo on ``review_id``, oldest first: who, when, the text before and after."""
        with self._db() as db:
            rows = db.execute(
                "SELECT action, reviewer, at, before, after, note FROM history WHERE review_id = ? ORDER BY n",
                (review_id,),
            ).fetchall()
        return [dict(zip(("action", "reviewer", "at", "before", "after", "note"), r)) for r in rows]

    def verdict_rows(self) -> list[dict[str, Any]]:
        """Every live verdict with its item's dimensions (what the quality numbers are computed from)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT v.verdict, v.at, v.distance, v.words, i.style, i.locale, i.drafter, i.refiner, i.audit "
                "FROM verdicts v JOIN items i ON i.review_id = v.review_id ORDER BY v.at"
            ).fetchall()
        keys = ("verdict", "at", "distance", "words", "style", "locale", "drafter", "refiner", "audit")
        return [dict(zip(keys, r)) for r in rows]

    # --- claims and verdicts ----------------------------------------------------------------------------------
    def claim(self, review_id: str, session: str, reviewer: str) -> None:
        """Open ``review_id`` for one reviewer session; refused while another session holds it."""
        now = time.time()
        with self._db() as db, _write(db):
            if db.execute("SELECT 1 FROM items WHERE review_id = ?", (review_id,)).fetchone() is None:
                raise DeskNotFoundError(f"{review_id} is not in the review queue.")
            db.execute("DELETE FROM claims WHERE until <= ?", (now,))
            other = db.execute(
                "SELECT reviewer FROM claims WHERE review_id = ? AND session != ?", (review_id, session)
            ).fetchone()
            if other is not None:
                raise DeskConflictError(f"{review_id} is being judged by {other[0] or 'another reviewer'}.")
            db.execute(
                "INSERT OR REPLACE INTO claims (review_id, session, reviewer, until) VALUES (?, ?, ?, ?)",
                (review_id, session, reviewer, now + CLAIM_S),
            )

    def decide(self, decision: ReviewDecision, session: str = "") -> ReviewDecision:
        """Append one verdict (or an undo of the live one) to the decisions file and index it."""
        from filelock import FileLock

        rid = decision.review_id
        stamped = decision.model_copy(update={"at": decision.at or _iso(dt.datetime.now(dt.UTC))})
        self.decisions.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.decisions) + ".lock"):
            with self._db() as db:
                if db.execute("SELECT 1 FROM items WHERE review_id = ?", (rid,)).fetchone() is None:
                    raise DeskNotFoundError(f"{rid} is not in the review queue.")
                live = db.execute("SELECT reviewer FROM verdicts WHERE review_id = ?", (rid,)).fetchone()
                claim = db.execute(
                    "SELECT reviewer FROM claims WHERE review_id = ? AND session != ? AND until > ?",
                    (rid, session, time.time()),
                ).fetchone()
            if decision.verdict == "undo" and live is None:
                raise DeskConflictError(f"{rid} has no verdict to undo.")
            if decision.verdict != "undo" and live is not None:
                raise DeskConflictError(f"{rid} already has a verdict.")
            if claim is not None:
                raise DeskConflictError(f"{rid} is being judged by {claim[0] or 'another reviewer'}.")
            with self.decisions.open("a", encoding="utf-8") as fh:
                fh.write(decision_line(stamped))
                fh.flush()
                os.fsync(fh.fileno())
            with self._db() as db, _write(db):  # catches up with the line just written
                db.execute("DELETE FROM claims WHERE review_id = ?", (rid,))
        return stamped

    def note(self, review_id: str, action: str, reviewer: str, before: str, after: str) -> None:
        """Add a line to an item's history that is not a verdict (another attempt asked for)."""
        with self._db() as db, _write(db):
            db.execute(
                "INSERT INTO history (review_id, action, reviewer, at, before, after, note) VALUES (?,?,?,?,?,?,?)",
                (review_id, action, reviewer, _iso(dt.datetime.now(dt.UTC)), before, after, ""),
            )

    # --- the index ---------------------------------------------------------------------------------------------
    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._connect()
            self._sync(db)
        except sqlite3.OperationalError:  # busy past the timeout, disk full: not the index's fault
            raise
        except sqlite3.DatabaseError as exc:  # a damaged index file: the JSONL files are the record
            from filelock import FileLock

            log.warning("review desk index %s is unusable (%s); rebuilding it", self.db_path, exc)
            with FileLock(str(self.db_path) + ".lock"):
                for suffix in ("", "-wal", "-shm"):
                    Path(str(self.db_path) + suffix).unlink(missing_ok=True)
                db = self._connect()
                self._sync(db)
        try:
            yield db
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)  # transactions are explicit
        # WAL: readers (pages, items) never wait for the writer that catches up or records a verdict.
        db.execute("PRAGMA journal_mode=WAL")
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            db.execute("BEGIN IMMEDIATE")  # one thread creates the tables; the others wait, then find them
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute("COMMIT")
        return db

    def _sync(self, db: sqlite3.Connection) -> None:
        """Index queue and decision lines written since the last call (whole lines only)."""
        if self._covered(db) == self._sizes():
            return
        db.execute("BEGIN IMMEDIATE")  # one writer catches up; the others wait and then find nothing new
        try:
            covered, sizes = self._covered(db), self._sizes()
            if any(covered[name] > sizes[name] for name in sizes):  # a file rewritten by hand: start over
                log.warning("review desk: %s changed under its index; re-reading it", self.queue)
                for table in ("items", "verdicts", "history", "meta"):
                    db.execute(f"DELETE FROM {table}")
                covered = dict.fromkeys(sizes, 0)
            for name, index in (("queue", _index_item), ("decisions", _index_decision)):
                end = self._read(db, name, covered[name], index)
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, str(end)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _covered(self, db: sqlite3.Connection) -> dict[str, int]:
        meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
        return {name: int(meta.get(name, 0)) for name in self._files()}

    def _sizes(self) -> dict[str, int]:
        return {name: (p.stat().st_size if p.is_file() else 0) for name, p in self._files().items()}

    def _files(self) -> dict[str, Path]:
        return {"queue": self.queue, "decisions": self.decisions}

    def _read(self, db: sqlite3.Connection, name: str, offset: int, index: Any) -> int:
        path = self._files()[name]
        if not path.is_file():
            return offset
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
        start = offset
        seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0]
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break  # a line being written: read it next time
            end = start + len(raw)
            if raw.strip():
                try:
                    line = json.loads(raw)
                except ValueError as exc:
                    log.warning("%s %s: the line at byte %d is not JSON (%s); skipped", name, path, start, exc)
                    line = None
                if isinstance(line, dict) and isinstance(line.get("review_id"), str):
                    seq += 1
                    index(db, line, start, end, seq)
            start = end
        return start


def _index_item(db: sqlite3.Connection, item: dict[str, Any], start: int, end: int, seq: int) -> None:
    result = item.get("result") or {}
    prov = result.get("provenance") or {}
    held = [d for d in result.get("decisions") or [] if d.get("action") != "allow"]
    codes = [r.get("code", "") for r in result.get("reasons") or []]
    tags = {d.get("rule", "") for d in held} | set(codes) | {c.split(".")[0] for c in codes}
    if item.get("audit"):
        tags.add("audit")
    tags.discard("")
    safety = bool(tags & SAFETY_RULES) or any(c.split(".")[0] in SAFETY_RULES or c.startswith("safety") for c in codes)
    db.execute(
        "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            item["review_id"], seq, start, end, item.get("queued_at") or "", result.get("style", ""),
            result.get("locale", ""), prov.get("drafter", ""), prov.get("refined_by") or prov.get("refiner", ""),
            " " + " ".join(sorted(tags)) + " ", int(safety), int(bool(item.get("audit"))),
            result.get("confidence"), int(bool(item.get("text"))), item.get("text") or "", item.get("draft") or "",
        ),
    )  # fmt: skip
    if item.get("decision"):  # a queue line whose decision was filled in by hand
        _index_decision(db, {"review_id": item["review_id"], **item["decision"]}, start, end, seq)


def _index_decision(db: sqlite3.Connection, line: dict[str, Any], start: int, end: int, seq: int) -> None:
    rid, verdict = line["review_id"], line.get("verdict")
    row = db.execute("SELECT text, draft FROM items WHERE review_id = ?", (rid,)).fetchone()
    before = (row[0] or row[1]) if row else ""
    at, who, note = line.get("at") or "", line.get("reviewer") or "", line.get("note") or ""
    if verdict == "undo":
        db.execute("DELETE FROM verdicts WHERE review_id = ?", (rid,))
        db.execute(
            "INSERT INTO history (review_id, action, reviewer, at, before, after, note) VALUES (?,?,?,?,?,?,?)",
            (rid, "undo", who, at, None, None, note),
        )
        return
    after = line.get("text") if verdict == "edit" else (row[0] if row and verdict == "approve" else None)
    distance, words = edit_distance(before, after or "") if verdict == "edit" else (0, 0)
    db.execute(
        "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)", (rid, verdict, who, at, after, distance, words)
    )
    db.execute(
        "INSERT INTO history (review_id, action, reviewer, at, before, after, note) VALUES (?,?,?,?,?,?,?)",
        (rid, verdict, who, at, before, after, note),
    )


@contextmanager
def _write(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE): a check and the write it allows stay together."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _waiting(db: sqlite3.Connection) -> int:
    return int(
        db.execute(
            "SELECT COUNT(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.review_id = i.review_id)"
        ).fetchone()[0]
    )


def _iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="seconds")
