"""What a running job tells people and machines: a progress line, JSON logs, Prometheus metrics.

prometheus_client is imported only when a metrics port is asked for (extra ``metrics``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from typing import Any, Iterable, TextIO

log = logging.getLogger("caption_agent.jobs")

# Latency buckets (seconds) from a cache hit to a slow LLM call.
_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_json_logging(stream: TextIO | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send the job logger's records to ``stream`` (stderr) as JSON lines; returns the handler to remove."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("caption_agent")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


class Progress:
    """A one-line progress bar on a terminal (rate, ETA, errors); periodic plain lines otherwise."""

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        interval_s: float | None = None,
    ) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.2 if self.tty else 10.0)
        self.done = self.errors = self.cached = 0
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, done: int = 0, errors: int = 0, cached: int = 0) -> None:
        self.done += done
        self.errors += errors
        self.cached += cached
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval_s:
            self._last = now
            self._draw(final=False)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = min(100.0, 100.0 * self.done / self.total)
            filled = int(pct / 5)
            bar = f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} {pct:5.1f}%"
            eta = _clock((self.total - self.done) / rate) if rate > 0 and self.done < self.total else "--:--"
        else:
            bar, eta = f"{self.done}", "--:--"
        return (
            f"{self.label} {bar} {rate:.2f} it/s ETA {eta} elapsed {_clock(elapsed)} "
            f"errors {self.errors} cached {self.cached}"
        )

    def _draw(self, final: bool) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(final=True)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class JobMetrics:
    """Counters for the summary, mirrored to Prometheus when ``port`` is given.

    Prometheus names: ``caption_agent_job_items_total{job,status}``, ``caption_agent_job_errors_total{job,type}``,
    ``caption_agent_job_cache_hits_total{job}``, ``caption_agent_job_stage_seconds{job,stage}`` (histogram,
    per item), ``caption_agent_job_batch_seconds{job}`` (histogram) and ``caption_agent_job_pending{job}``.
    """

    def __init__(self, job: str, port: int | None = None, addr: str = "127.0.0.1") -> None:
        self.job = job
        self.statuses: Counter[str] = Counter()
        self.error_types: Counter[str] = Counter()
        self.cache_hits = 0
        self.port: int | None = None
        self._prom: dict[str, Any] | None = None
        self._server: Any = None
        if port is not None:
            self._start(port, addr)

    def _start(self, port: int, addr: str) -> None:
        from caption_agent._extras import require

        prom = require("prometheus_client", "metrics", "Prometheus metrics (--metrics-port)")
        registry = prom.CollectorRegistry()
        self._prom = {
            "registry": registry,
            "items": prom.Counter(
                "caption_agent_job_items", "Items written, by status.", ["job", "status"], registry=registry
            ),
            "errors": prom.Counter(
                "caption_agent_job_errors", "Error records, by error type.", ["job", "type"], registry=registry
            ),
            "cache": prom.Counter(
                "caption_agent_job_cache_hits", "Items answered from the cache.", ["job"], registry=registry
            ),
            "stage": prom.Histogram(
                "caption_agent_job_stage_seconds",
                "Per-item latency of each pipeline stage.",
                ["job", "stage"],
                buckets=_BUCKETS,
                registry=registry,
            ),
            "batch": prom.Histogram(
                "caption_agent_job_batch_seconds",
                "Wall time of one processed batch.",
                ["job"],
                buckets=_BUCKETS,
                registry=registry,
            ),
            "pending": prom.Gauge("caption_agent_job_pending", "Items not written yet.", ["job"], registry=registry),
        }
        self._server, _thread = prom.start_http_server(port, addr=addr, registry=registry)
        self.port = self._server.server_port
        log.info("metrics server started", extra={"port": self.port, "addr": addr})

    def record(self, records: Iterable[dict[str, Any]], *, cached: bool = False) -> tuple[int, int]:
        """Count written records; returns (items, errors) for the progress bar."""
        n = errors = 0
        for r in records:
            n += 1
            status = r["status"]
            self.statuses[status] += 1
            if status == "error":
                errors += 1
                etype = (r.get("error") or {}).get("type", "Error")
                self.error_types[etype] += 1
                if self._prom:
                    self._prom["errors"].labels(self.job, etype).inc()
            if self._prom:
                self._prom["items"].labels(self.job, status).inc()
                if not cached:
                    timings = (r.get("provenance") or {}).get("timings_ms") or {}
                    for stage, ms in timings.items():
                        self._prom["stage"].labels(self.job, stage).observe(ms / 1000.0)
        if cached:
            self.cache_hits += n
            if self._prom:
                self._prom["cache"].labels(self.job).inc(n)
        return n, errors

    def batch_seconds(self, seconds: float) -> None:
        if self._prom:
            self._prom["batch"].labels(self.job).observe(seconds)

    def pending(self, n: int) -> None:
        if self._prom:
            self._prom["pending"].labels(self.job).set(n)

    def exposition(self) -> str:
        """The current metrics in Prometheus text format (empty when no port was asked for)."""
        if not self._prom:
            return ""
        import prometheus_client

        return prometheus_client.generate_latest(self._prom["registry"]).decode()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
