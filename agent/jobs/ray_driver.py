"""The job driver's loop for the streaming Ray runner: each row's record written once, copies after originals.

Rows come back from ``ray_stream`` in finished blocks: records (computed rows, unusable rows), done keys, and
followers (rows whose computation another row claimed). A follower is answered with a copy of its original's
record as soon as that record is known: from the recent results in memory, from the spill file when it was
evicted from memory, or, when the original has not come back yet, once it does (in the same write, after it).
The engine hands in its ``write`` (log, metrics, progress) and ``copy`` (``engine.copy_record``): this module is
imported by the engine, never the other way round.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from caption_agent.jobs.ray_stream import run_ray_stream
from caption_agent.jobs.stages import error_record

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.jobs.engine import JobOptions, JobSummary, ResultCache
    from caption_agent.jobs.log import OutputLog
    from caption_agent.jobs.metrics import JobMetrics, Progress
    from caption_agent.jobs.ray_sources import RaySource

log = logging.getLogger("caption_agent.jobs")
_MEMO_SIZE = 4096  # records kept in memory by cache key; older ones are spilled to disk
_SPILL_BATCH = 512  # evicted records written to the spill file per transaction


class SharedResults:
    """This run's results by cache key: the last ``size`` in memory, older ones in a temporary SQLite file
    (created on the first eviction, deleted on close), so a follower far behind its original still finds it."""

    def __init__(self, size: int = _MEMO_SIZE) -> None:
        self.size = size
        self._memo: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._evicted: dict[str, dict[str, Any]] = {}  # not yet in the spill file
        self._folder: Path | None = None
        self._db: sqlite3.Connection | None = None

    def put(self, cache_key: str, record: dict[str, Any]) -> None:
        self._memo[cache_key] = record
        self._memo.move_to_end(cache_key)
        if len(self._memo) > self.size:
            old_key, old = self._memo.popitem(last=False)
            self._evicted[old_key] = old
            if len(self._evicted) >= _SPILL_BATCH:
                self._spill()

    def get(self, cache_key: str) -> dict[str, Any] | None:
        hit = self._memo.get(cache_key) or self._evicted.get(cache_key)
        if hit is None and self._db is not None:
            row = self._db.execute("SELECT record FROM results WHERE key = ?", (cache_key,)).fetchone()
            hit = json.loads(row[0]) if row else None
        return hit

    def _spill(self) -> None:
        if self._db is None:
            self._folder = Path(tempfile.mkdtemp(prefix="caption-agent-shared-"))
            self._db = sqlite3.connect(self._folder / "shared.sqlite")
            self._db.execute("PRAGMA journal_mode=OFF")  # scratch data: a crash loses nothing the log needs
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE results (key TEXT PRIMARY KEY, record TEXT NOT NULL)")
        rows = [(k, json.dumps(r, ensure_ascii=False, default=str)) for k, r in self._evicted.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)", rows)
        self._evicted = {}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def drive_stream(
    source: RaySource,
    options: JobOptions,
    out: OutputLog,
    write: Callable[..., None],
    copy: Callable[[Any, dict[str, Any]], dict[str, Any]],
    summary: JobSummary,
    metrics: JobMetrics,
    progress: Progress,
    cache: ResultCache | None = None,
) -> None:
    """Stream ``source`` through Ray and write every row's record: computed, copied, or already done."""
    shared = SharedResults()
    waiting: dict[str, list[Any]] = {}  # cache key not back yet -> follower items that will copy its record
    written: set[str] = set()  # keys answered by this run (the log's index lags its buffer)
    try:
        for rows, seconds in run_ray_stream(source, options, frozenset(out.index)):
            metrics.batch_seconds(seconds)
            fresh: list[dict[str, Any]] = []
            copies: list[dict[str, Any]] = []
            for row in rows:
                summary.total += 1
                if (row.record is None and row.follower is None) or row.key in out.index or row.key in written:
                    summary.already_done += 1
                    progress.update(done=1)
                    continue
                written.add(row.key)
                if row.follower is not None:
                    hit = shared.get(row.cache_key)
                    if hit is None:
                        waiting.setdefault(row.cache_key, []).append(row.follower)
                    else:
                        copies.append(copy(row.follower, hit))
                    continue
                assert row.record is not None
                fresh.append(row.record)
                if row.cache_key:  # a computation, errors included: its followers copy it whatever it says
                    shared.put(row.cache_key, row.record)
                    copies.extend(copy(f, row.record) for f in waiting.pop(row.cache_key, []))
            if fresh:  # originals first: a kill between the two leaves copies to redo, never orphans
                write(fresh)
            if copies:
                summary.duplicates += len(copies)
                write(copies, cached=True)
            if cache:  # filled for later runs (a local run reads it); the stream computes in workers, unread
                done = [(row.cache_key, row.record) for row in rows if row.record and row.cache_key]
                out.flush()  # the log is the truth: cache only what is already durable there
                cache.put_many((k, r) for k, r in done if r["status"] != "error")
        lost = [f for followers in waiting.values() for f in followers]
        if lost:  # only if a claimed computation never came back: an error record, retried by --retry-errors
            log.warning("rows whose shared computation never came back", extra={"rows": len(lost)})
            message = "the row computing this request never came back; run again with --retry-errors"
            write([error_record(f, "SharedResultMissing", message, "job") for f in lost])
    finally:
        shared.close()
