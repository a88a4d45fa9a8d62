"""The batch benchmark runs end to end on a few items and reports consistent numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_batch.py"


def test_bench_batch_quick_zero_cost(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_batch", BENCH)
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.modules["bench_batch"] = module  # the registries import the harness backends by module name
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    report = module.main(["--quick", "--skip-real", "--zero-items", "24", "--batch-size", "8", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    zero = report["zero_cost"]
    assert zero["items"] == 24 and set(zero["items_per_s"]) == {"loop", "pipeline", "job"}
    assert all(v > 0 for v in zero["items_per_s"].values())
    # The ratio is taken before rounding; the reported seconds are rounded to 0.1 ms.
    secs = zero["seconds"]
    low, high = (secs["pipeline"] - 5e-5) / (secs["job"] + 5e-5), (secs["pipeline"] + 5e-5) / (secs["job"] - 5e-5)
    assert low - 0.0005 <= zero["job_vs_pipeline"] <= high + 0.0005
