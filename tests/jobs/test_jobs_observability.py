"""Metrics, progress, JSON logs and the CLI, without loading models."""

from __future__ import annotations

import io
import json
import logging
import socket
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from caption_agent.cli import app
from caption_agent.jobs.metrics import JobMetrics, JsonFormatter, Progress


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prometheus_endpoint_serves_items_errors_and_stage_latencies():
    pytest.importorskip("prometheus_client")
    metrics = JobMetrics("caption", port=0)
    try:
        records = [
            {"key": "a", "status": "ok", "provenance": {"timings_ms": {"draft": 120.0, "rank": 4.0}}},
            {"key": "b", "status": "ok", "provenance": {"timings_ms": {"draft": 80.0}}},
            {"key": "c", "status": "error", "error": {"type": "InvalidImageError", "message": "x"}},
        ]
        assert metrics.record(records) == (3, 1)
        metrics.record([{"key": "d", "status": "ok"}], cached=True)
        metrics.batch_seconds(0.3)
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=10).read().decode()
    finally:
        metrics.close()
    assert 'caption_agent_job_items_total{job="caption",status="ok"} 3.0' in body
    assert 'caption_agent_job_errors_total{job="caption",type="InvalidImageError"} 1.0' in body
    assert 'caption_agent_job_cache_hits_total{job="caption"} 1.0' in body
    assert 'caption_agent_job_stage_seconds_count{job="caption",stage="draft"} 2.0' in body
    assert 'caption_agent_job_stage_seconds_sum{job="caption",stage="draft"} 0.2' in body
    assert 'caption_agent_job_batch_seconds_count{job="caption"} 1.0' in body
    with pytest.raises(urllib.error.URLError):  # closed with the job
        urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=2)


def test_progress_line_has_rate_eta_and_errors():
    stream = io.StringIO()
    progress = Progress(10, "caption", stream=stream, interval_s=0)
    progress.update(done=4, errors=1, cached=2)
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("caption [########............] 4/10  40.0%")
    assert "it/s" in line and "ETA" in line and "errors 1" in line and "cached 2" in line
    progress.update(done=6)
    progress.close()
    assert "10/10 100.0%" in stream.getvalue().splitlines()[-1]
    quiet = io.StringIO()
    Progress(None, "x", stream=quiet, enabled=False).close()
    assert quiet.getvalue() == ""


def test_json_formatter_keeps_extra_fields():
    record = logging.LogRecord("caption_agent.jobs", logging.INFO, __file__, 1, "job finished", None, None)
    record.summary = {"written": 3}
    out = json.loads(JsonFormatter().format(record))
    assert out["msg"] == "job finished" and out["summary"] == {"written": 3} and out["level"] == "info"


def test_cli_reports_a_summary_and_exit_codes(tmp_path):
    pytest.importorskip("langchain_openai")
    runner = CliRunner()
    missing = runner.invoke(app, ["batch", "caption", str(tmp_path / "nope"), "--out", str(tmp_path / "o.jsonl")])
    assert missing.exit_code == 2 and "does not exist" in missing.output and "Fix:" in missing.output
    captions = tmp_path / "c.jsonl"
    captions.write_text(json.dumps({"id": "a", "text": "A green teapot on a shelf."}) + "\n")
    bad_locale = runner.invoke(
        app,
        [
            "batch",
            "localize",
            str(captions),
            "--locales",
            "de-DE,zz-ZZ-nope",
            "--out",
            str(tmp_path / "l.jsonl"),
            "--refiner",
            "vllm",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ],
    )
    assert bad_locale.exit_code == 2 and "zz-ZZ-nope" in bad_locale.output
    port = _free_port()
    args = [
        "batch",
        "localize",
        str(captions),
        "--locales",
        "de-DE,fr-FR",
        "--out",
        str(tmp_path / "l.jsonl"),
        "--refiner",
        "vllm",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--model",
        "m",
        "--no-progress",
        "--metrics-port",
        str(_free_port()),
    ]
    env = {"CAPTION_AGENT_REFINER__VLLM__MAX_RETRIES": "0", "CAPTION_AGENT_REFINER__ON_UNAVAILABLE": "error"}
    failed = runner.invoke(app, args, env=env)  # on_unavailable=error: a down server fails its items
    assert failed.exit_code == 1, failed.output
    summary = json.loads(next(line for line in failed.stdout.splitlines() if line.startswith("{")))
    assert summary["written"] == 2 and summary["error_types"] == {"RefinerUnavailableError": 2}
    assert summary["metrics_port"] and "--retry-errors" in failed.output
