"""The benchmark entry points run in quick mode and write the JSON they promise (numbers are not asserted)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
pytestmark = pytest.mark.slow


def test_run_all_quick_subset(tmp_path):
    import run_all

    out = tmp_path / "bench.json"
    report = run_all.main(["--quick", "--only", "stages,refiner_vllm", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    m = report["machine"]
    assert m["cpu_count"] >= 1 and m["python"] and m["ram_gb"] > 0 and "gpu" in m
    stages = report["benchmarks"]["stages"]
    assert stages["status"] == "ok", stages
    names = {r["name"]: r["value"] for r in stages["ratios"]}
    assert {"lite drafter images/s (batch 1)", "cache hit vs miss"} <= set(names)
    assert all(isinstance(v, (int, float)) and v > 0 for v in names.values())
    refiner = report["benchmarks"]["refiner_vllm"]
    if not os.environ.get("CAPTION_AGENT_TEST_VLLM_URL"):
        assert refiner["status"] == "skipped" and "no server" in refiner["reason"]
    assert "cache hit vs miss" in run_all.render(report)


def test_run_all_rejects_unknown_benchmark():
    import run_all

    with pytest.raises(SystemExit):
        run_all.main(["--only", "nope"])


def test_gpu_bench_runs_on_cpu_with_tiny_models(tmp_path):
    import gpu_bench

    out = tmp_path / "gpu.json"
    report = gpu_bench.main(["--quick", "--budget-s", "150", "--out", str(out)])
    assert json.loads(out.read_text())["parts"].keys() == report["parts"].keys()
    hf = report["parts"]["drafters"]["transformers"]
    measured = [r for r in hf["rows"] if "images_per_s" in r]
    assert measured and all(r["images_per_s"] > 0 and r["candidates"] >= r["batch"] for r in measured)
    if not report["cuda"]:
        assert report["parts"]["drafters"].get("tiny_model") or report["cached_models"]["vlm"]
    refiner = report["parts"]["vllm_refiner"]
    assert "skipped" in refiner or "vllm_ratio_to_c1" in refiner
    local = report["parts"]["local_refiner"]
    assert "skipped" in local or local.get("captions_per_s", 0) > 0
