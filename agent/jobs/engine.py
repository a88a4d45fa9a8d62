"""The job driver shared by caption and localization jobs: resume, share computations, cache, run batches, write.
(The streaming Ray runner's loop is ``ray_driver.drive_stream``, called from here with this driver's log.)

Only this driver writes the output log, whichever runner computes the batches (local threads or Ray), so the
exactly-once guarantee does not depend on the runner: computing an item twice is possible after a kill,
writing it twice is not. Every input row is its own item with its own key, so N rows give N records; rows that
ask for the same computation (same ``cache_key``) share one, and each copy says whose it reused in
``duplicate_of``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field

from caption_agent._iter import chunked
from caption_agent.jobs.local_runner import Prefetcher, run_local
from caption_agent.jobs.log import OutputLog, infer_format
from caption_agent.jobs.metrics import JobMetrics, Progress
from caption_agent.jobs.stages import Stage, StageSpec, error_record

log = logging.getLogger("caption_agent.jobs")
_MEMO_SIZE = 4096  # results kept in memory for repeats within a run; --cache covers the rest


class JobOptions(BaseModel):
    """Settings shared by every batch job (CLI flags of the same names)."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Output: a .jsonl file, or a Parquet dataset folder (--format parquet).")
    format: Literal["jsonl", "parquet"] | None = Field(None, description="Output format; from the suffix if unset.")
    batch_size: int = Field(16, ge=1, le=4096, description="Items per pipeline batch.")
    workers: int = Field(1, ge=1, le=64, description="Batches in flight at once (local runner).")
    flush_every: int = Field(32, ge=1, le=100_000, description="Records per write + fsync.")
    flush_interval_s: float = Field(
        2.0, gt=0, le=3600, description="Longest time a finished record waits for its fsync."
    )
    retry_errors: bool = Field(False, description="Reprocess the items whose record is an error.")
    cache_dir: Path | None = Field(None, description="Result cache shared across jobs (SQLite), keyed by item.")
    limit: int | None = Field(None, ge=1, description="Read only the first N input items.")
    runner: Literal["local", "ray"] = Field("local", description="Where batches run.")
    ray_address: str | None = Field(None, description="Ray cluster address; a local Ray instance when unset.")
    ray_concurrency: int = Field(1, ge=1, le=1024, description="Ray drafting actors (each loads the models once).")
    ray_gpus: float = Field(0.0, ge=0, le=64, description="GPUs per Ray drafting actor (0: CPU).")
    ray_resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources per drafting actor, e.g. {'accelerator': 1}."
    )
    ray_draft_cpus: float = Field(1.0, gt=0, le=64, description="CPUs per Ray drafting actor.")
    ray_cpu_actors: int = Field(1, ge=1, le=1024, description="Ray actors for the CPU steps (ranking, grounding).")
    ray_cpu_per_actor: float = Field(0.25, gt=0, le=64, description="CPUs per CPU-step actor.")
    ray_io_actors: int = Field(1, ge=1, le=1024, description="Ray actors for refinement and moderation.")
    ray_key_actors: int = Field(
        1,
        ge=1,
        le=1024,
        description="Ray actors that key rows (hash or fetch images); 1: the read tasks key their own rows.",
    )
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Serve Prometheus metrics on this port.")
    metrics_addr: str = Field("127.0.0.1", description="Address the metrics server binds.")
    progress: bool = Field(True, description="Show a progress bar on stderr.")
    allow_config_change: bool = Field(False, description="Resume an output made with other settings.")


class JobSummary(BaseModel):
    """What a job did. ``written`` counts records written by this run; ``duplicates`` counts rows answered with
    another row's computation in this run (each still got its own record, with ``duplicate_of``)."""

    job: str
    out: str
    format: str
    total: int = 0
    already_done: int = 0
    duplicates: int = 0
    written: int = 0
    ok: int = 0
    review: int = 0
    blocked: int = 0
    errors: int = 0
    cached: int = 0
    retried_errors: int = 0
    skipped_inputs: int = 0
    repaired_bytes: int = 0
    error_types: dict[str, int] = Field(default_factory=dict)
    elapsed_s: float = 0.0
    items_per_s: float = 0.0
    metrics_port: int | None = None


class Item(Protocol):
    """What the driver needs of a work item (CaptionItem, LocalizeItem)."""

    # Read-only (properties): the items are frozen dataclasses.
    @property
    def key(self) -> str: ...  # identity in the output log: one input row (its origin, id, content and request)

    @property
    def cache_key(self) -> str: ...  # identity of the computation (content and request only)

    @property
    def error(self) -> dict[str, str] | None: ...  # set when the input row itself is unusable

    def annotate(self, record: dict[str, Any]) -> dict[str, Any]: ...

    def to_json(self) -> str: ...


# Settings of a backend that change how it runs, not what it writes.
_RUNTIME_KEYS = ("timeout_s", "max_retries", "max_concurrency", "api_key", "base_url", "batch_size")


def _active_sections(stage: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """A drafter/refiner settings dict with only the backend in use (plus ``keep``), runtime keys left out."""
    backend = str(stage.get("backend"))
    out = {k: v for k, v in stage.items() if not isinstance(v, dict) or k in (backend, *keep)}
    if backend in stage.get("options", {}):
        out["options"] = {backend: stage["options"][backend]}
    for name in (backend, *keep):
        if isinstance(out.get(name), dict):
            out[name] = {k: v for k, v in out[name].items() if k not in _RUNTIME_KEYS}
    return out


def config_fingerprint(config: Any, extra: str = "") -> str:
    """Hash of the settings that change outputs: the backends in use (another backend's section, timeouts,
    concurrency, URLs and keys left out)."""
    from caption_agent import __version__

    data = json.loads(config.model_dump_json())
    data["drafter"] = _active_sections(data["drafter"], keep=("lite",))  # lite is the drafter's fallback
    data["refiner"] = _active_sections(data["refiner"], keep=tuple(config.refiner.chain()))  # every link
    data["retrieval"].pop("chroma_url", None)
    data["policy"].pop("review_queue", None)
    # What the files say, not only where they are: an edited policy or preset is other settings.
    from caption_agent.policies import PolicyEngine
    from caption_agent.prompts import list_styles, prompt_hash

    data["policy_hash"] = PolicyEngine.load(config.policy.file).hash
    data["presets"] = {name: prompt_hash(p) for name, p in list_styles(config.prompts_dir).items()}
    if "template" in config.refiner.chain():  # the compose templates and the lexicon write its captions
        from caption_agent.refiners import template_data_digest

        data["template_data"] = template_data_digest(config.refiner.template)
    text = json.dumps(data, sort_keys=True, default=str) + "\0" + extra + "\0" + __version__
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def copy_record(item: Any, record: dict[str, Any]) -> dict[str, Any]:
    """``item``'s record from another row's computation: its own key and origin, plus ``duplicate_of``."""
    copy = {**record, "key": item.key, "cached": True, "duplicate_of": record["key"]}
    if isinstance(copy.get("image"), dict) and isinstance(getattr(item, "source", None), str):
        copy["image"] = {**copy["image"], "source": item.source}  # this row's own file, same bytes
    return item.annotate(copy)


class ResultCache:
    """Finished records by cache key (content and request, not the row) and settings, in one SQLite file.

    Error records are never cached: a retry must really retry. Only the job driver thread touches it.
    """

    def __init__(self, folder: Path, fingerprint: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.prefix = fingerprint + ":"
        self._db = sqlite3.connect(folder / "results.sqlite", timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, record TEXT NOT NULL)")
        self._failed = False

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT record FROM results WHERE key = ?", (self.prefix + key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_many(self, pairs: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Store finished records; a cache that cannot be written (disk full) is switched off with a warning: the
        output log holds every record, the cache only saves recomputation."""
        if self._failed:
            return
        rows = [(self.prefix + k, json.dumps(r, ensure_ascii=True)) for k, r in pairs]
        if rows:
            try:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)", rows)
            except sqlite3.Error as exc:
                self._failed = True
                log.warning("the result cache cannot be written; going on without it", extra={"error": str(exc)})

    def close(self) -> None:
        self._db.close()


def run_job(
    kind: str,
    items: Iterable[Item],
    stage: Stage | None,
    spec: StageSpec,
    options: JobOptions,
    *,
    fingerprint: str,
    total: int | None = None,
    skipped_inputs: Callable[[], int] | None = None,
    source: Any = None,
) -> JobSummary:
    """Drive one job: open (and repair) the log, skip done keys, answer cache hits, run the rest, write.

    With the Ray runner and a ``source`` (``ray_sources.RaySource``), Ray reads and keys the input itself and
    ``items`` is not read here: the driver holds the done keys, never the items."""
    fmt = infer_format(options.out, options.format)
    summary = JobSummary(job=kind, out=str(options.out), format=fmt)
    start = time.monotonic()
    metrics = JobMetrics(kind, options.metrics_port, options.metrics_addr)
    summary.metrics_port = metrics.port
    cache = ResultCache(options.cache_dir, fingerprint) if options.cache_dir else None
    with OutputLog(
        options.out,
        fmt,
        kind=kind,
        fingerprint=fingerprint,
        allow_config_change=options.allow_config_change,
        flush_every=options.flush_every,
        flush_interval_s=options.flush_interval_s,
    ) as out:
        summary.repaired_bytes = out.repaired_bytes
        if options.retry_errors:
            summary.retried_errors = out.drop_errors()
        progress = Progress(total, kind, enabled=options.progress)
        log.info(
            "job started",
            extra={"job": kind, "out": str(options.out), "done_before": len(out.index), "runner": options.runner},
        )
        run = _JobRun(summary, out, metrics, progress, cache)
        try:
            run.compute(items, stage, spec, options, source)
            out.flush()
            out.compact()
        finally:
            progress.close()
            metrics.close()
            if cache:
                cache.close()
    _close_summary(summary, metrics, skipped_inputs, start)
    log.info("job finished", extra={"summary": summary.model_dump()})
    return summary


class _JobRun:
    """One run's driver state: what is written (log, metrics, progress), recent results by cache key (a bounded
    LRU) and the rows waiting for a computation in flight. Only the job's driver thread uses it."""

    def __init__(self, summary: JobSummary, out: OutputLog, metrics: JobMetrics, progress: Progress, cache: Any):
        self.summary, self.out, self.metrics, self.progress, self.cache = summary, out, metrics, progress, cache
        self.memo: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.waiting: dict[str, list[Any]] = {}  # cache key in flight -> items that will copy its record

    def compute(self, items: Iterable[Any], stage: Stage | None, spec: StageSpec, options: JobOptions, source: Any):
        """Run what is pending on the runner the options name, writing each batch as it finishes."""
        streaming = options.runner == "ray" and source is not None
        reader = Prefetcher(() if streaming else items, options.batch_size * max(2, options.workers) * 2)
        try:
            if streaming:
                from caption_agent.jobs.ray_driver import drive_stream

                drive_stream(source, options, self.out, self.write, copy_record, self.summary, self.metrics,
                             self.progress, self.cache)  # fmt: skip
            elif options.runner == "ray":
                from caption_agent.jobs.ray_runner import run_ray

                todo = list(self.pending(reader))
                self.metrics.pending(len(todo))
                by_key = {i.key: i for i in todo}
                for keys, records, seconds in run_ray(todo, spec, options):
                    self.finished([by_key[k] for k in keys], records, seconds)
            else:
                assert stage is not None
                for batch, records, seconds in run_local(
                    chunked(self.pending(reader), options.batch_size), stage, options.workers
                ):
                    self.finished(batch, records, seconds)
        finally:
            reader.close()

    def write(self, records: list[dict[str, Any]], *, cached: bool = False) -> None:
        self.out.append(records)
        n, errors = self.metrics.record(records, cached=cached)
        self.progress.update(done=n, errors=errors, cached=n if cached else 0)

    def pending(self, reader: Iterable[Any]) -> Iterator[Any]:
        """The items that need computing; the others are answered here (done before, a repeated key, an unusable
        row, a result of this run or of the cache, a computation already in flight)."""
        seen: set[str] = set()
        summary = self.summary
        for item in reader:
            summary.total += 1
            if item.key in self.out.index or item.key in seen:
                if item.key not in self.out.index:  # two rows of one input never share a key; guard the log anyway
                    log.warning("an input row repeats another row's key; written once", extra={"key": item.key})
                summary.already_done += 1
                self.progress.update(done=1)
                continue
            seen.add(item.key)
            if not self._answered(item):
                self.waiting[item.cache_key] = []
                yield item

    def _answered(self, item: Any) -> bool:
        """Write ``item``'s record if it needs no computation of its own; whether it did."""
        if item.error:
            self.write([error_record(item, item.error["type"], item.error["message"], item.error["stage"])])
            return True
        hit = self.memo.get(item.cache_key)
        if hit is not None:  # computed earlier in this run for another row
            self.summary.duplicates += 1
            self.write([copy_record(item, hit)], cached=True)
            return True
        hit = self.cache.get(item.cache_key) if self.cache else None
        if hit is not None:
            self.write([item.annotate({**hit, "key": item.key, "cached": True})], cached=True)
            return True
        if item.cache_key in self.waiting:  # the same request is being computed: copy its result
            self.summary.duplicates += 1
            self.waiting[item.cache_key].append(item)
            return True
        return False

    def finished(self, batch: Sequence[Any], records: list[dict[str, Any]], seconds: float) -> None:
        self.metrics.batch_seconds(seconds)
        self.write(records)
        for item, record in zip(batch, records):
            followers = self.waiting.pop(item.cache_key, [])
            if followers:
                self.write([copy_record(f, record) for f in followers], cached=True)
        done = [(i.cache_key, r) for i, r in zip(batch, records) if r["status"] != "error"]
        for cache_key, record in done:
            self.memo[cache_key] = record
            self.memo.move_to_end(cache_key)
            if len(self.memo) > _MEMO_SIZE:
                self.memo.popitem(last=False)
        if self.cache:
            self.out.flush()  # the log is the truth: cache only what is already durable there
            self.cache.put_many(done)


def _close_summary(
    summary: JobSummary, metrics: JobMetrics, skipped_inputs: Callable[[], int] | None, start: float
) -> None:
    for status in ("ok", "review", "blocked"):
        setattr(summary, status, metrics.statuses[status])
    summary.errors = metrics.statuses["error"]
    summary.written = sum(metrics.statuses.values())
    summary.cached = metrics.cache_hits
    summary.error_types = dict(metrics.error_types)
    summary.skipped_inputs = skipped_inputs() if skipped_inputs else 0
    summary.elapsed_s = round(time.monotonic() - start, 3)
    summary.items_per_s = round(summary.written / summary.elapsed_s, 3) if summary.elapsed_s else 0.0
