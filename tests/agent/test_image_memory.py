"""Bounded work per image: one caption's peak RSS growth stays under 3x the decoded RGB size + 300 MB, and an
extreme strip is refused at once with a message naming the aspect limit. One fresh process per image (peak RSS
is a lifetime figure), through the same worker as benchmarks/bench_image_memory.py (its quick set, refiner none).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
pytestmark = pytest.mark.slow

import bench_image_memory  # noqa: E402

QUICK_SET = ["astronaut.jpg", "strip_20000x1000.png", "strip_40000x8.png", "max_pixels_7071x7071.png"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    made = bench_image_memory.make_images(tmp_path_factory.mktemp("image-memory"), quick=True)
    return {image.name: image for image in made}


def test_quick_set_is_the_documented_one(images):
    assert sorted(images) == sorted(QUICK_SET)


@pytest.mark.parametrize("name", [n for n in QUICK_SET if "40000x8" not in n])
def test_accepted_image_stays_within_memory_budget(images, name):
    row = bench_image_memory.measure(images[name], refiner="none", cap_gb=6.0, timeout_s=120)
    assert row["accepted"], row
    assert row["status"] in {"ok", "review", "blocked"}, row
    assert row["within_budget"], (
        f"{name}: peak RSS growth {row['growth_mb']} MB over the budget of {row['budget_mb']} MB ({row['peak_method']})"
    )


def test_extreme_strip_is_refused_quickly_with_the_aspect_limit(images):
    row = bench_image_memory.measure(images["strip_40000x8.png"], refiner="none", cap_gb=6.0, timeout_s=120)
    assert row["accepted"] is False, row
    assert row["status"].startswith("refused: "), row
    assert "aspect" in row["status"].lower() and "Fix:" in row["status"], row
    # Refused from the header: no decode, no screening. The process time includes importing torch and the
    # warm-up caption, which is load-dependent on a shared 2-core machine.
    assert row["caption_s"] < 2.0, row
    assert row["process_s"] < 30.0, row
    assert row["within_budget"], row
