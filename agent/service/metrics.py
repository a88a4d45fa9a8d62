"""Prometheus metrics of one app, in the app's own registry (several apps in one process never collide)."""

from __future__ import annotations

from typing import Any

# Seconds, from a cached style lookup to a slow batch on a loaded CPU.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_EDIT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34)


class ServiceMetrics:
    """Request counts, errors by type, latency per route and per pipeline stage, queue depth, batch sizes."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "caption_agent_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.errors = Counter(
            "caption_agent_http_errors", "Error responses by route and error type.", ["route", "type"], registry=r
        )
        self.latency = Histogram(
            "caption_agent_http_request_seconds", "Request latency by route.", ["route"], buckets=_BUCKETS, registry=r
        )
        self.stage = Histogram(
            "caption_agent_stage_seconds",
            "Pipeline time per stage and item (from result provenance).",
            ["stage"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("caption_agent_queue_depth", "Caption requests waiting for the drafter.", registry=r)
        self.in_flight = Gauge(
            "caption_agent_batch_in_flight", "Requests in the batch being captioned now.", registry=r
        )
        self.batch_size = Histogram(
            "caption_agent_batch_size", "Requests per drafter batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "caption_agent_batch_seconds", "Wall time of one caption_batch call.", buckets=_BUCKETS, registry=r
        )
        self.results = Counter("caption_agent_results", "Caption results by status.", ["status"], registry=r)
        self.review = Counter(
            "caption_agent_review_decisions", "Verdicts written from the review page.", ["verdict"], registry=r
        )

        self.review_outcomes = Counter(
            "caption_agent_review_outcomes",
            "Verdicts by verdict and by the item's style, locale, drafter and refiner (acceptance = approve / all).",
            ["verdict", "style", "locale", "drafter", "refiner"],
            registry=r,
        )
        self.review_edit_distance = Histogram(
            "caption_agent_review_edit_distance_words",
            "Words changed by a reviewer's edit (word-level Levenshtein distance to the held caption).",
            ["style", "locale"],
            buckets=_EDIT_BUCKETS,
            registry=r,
        )
        self.review_waiting = Gauge("caption_agent_review_waiting", "Review items waiting for a verdict.", registry=r)

    def observe_verdict(self, decision: Any, item: dict[str, Any]) -> None:
        """Count one verdict given on the desk (an undo counts as its own verdict, so rates stay honest)."""
        from caption_agent.policies.review_text import edit_distance

        result = item.get("result") or {}
        prov = result.get("provenance") or {}
        style, locale = str(result.get("style", "")), str(result.get("locale", ""))
        refiner = str(prov.get("refined_by") or prov.get("refiner", ""))
        self.review.labels(decision.verdict).inc()
        self.review_outcomes.labels(decision.verdict, style, locale, str(prov.get("drafter", "")), refiner).inc()
        if decision.verdict == "edit":
            before = item.get("text") or item.get("draft") or ""
            self.review_edit_distance.labels(style, locale).observe(edit_distance(before, decision.text or "")[0])

    def observe_result(self, result: Any) -> None:
        self.results.labels(result.status).inc()
        for stage, ms in result.provenance.timings_ms.items():
            self.stage.labels(stage).observe(ms / 1000.0)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
