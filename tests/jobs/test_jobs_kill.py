"""SIGKILL the real CLI job at random points, re-run it, and check that every item is in the output exactly once.

Kills land at a random time during start-up and after a random number of durable records (plus a random delay,
so some land between a write and its fsync or in the middle of a batch). The seed is printed; set
CAPTION_AGENT_TEST_KILL_SEED to replay a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from caption_agent.jobs import read_records
from caption_agent.jobs.manifest import iter_items

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _records_on_disk(out: Path, fmt: str) -> int:
    if fmt == "jsonl":
        return out.read_bytes().count(b"\n") if out.is_file() else 0
    return sum(1 for _ in read_records(out)) if out.is_dir() else 0


def _start(manifest: Path, out: Path, fmt: str, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "caption_agent.cli",
        "batch",
        "caption",
        str(manifest),
        "--out",
        str(out),
        "--format",
        fmt,
        "--refiner",
        "none",
        "--batch-size",
        "2",
        "--flush-every",
        "1",
        "--no-progress",
        "--log-json",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


def _kill_after_records(
    proc: subprocess.Popen, out: Path, fmt: str, target: int, delay: float, timeout: float = 600
) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``target`` records are on disk; False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _records_on_disk(out, fmt) >= target:
            time.sleep(delay)  # lands anywhere: mid-batch, between a write and its fsync, in the next write
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the job made no progress before the timeout")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_sigkill_at_random_points_then_rerun_leaves_every_item_once(tmp_path, images_dir, fmt):
    seed = int(os.environ.get("CAPTION_AGENT_TEST_KILL_SEED", random.randrange(1 << 30)))
    print(f"kill seed: {seed}")
    rng = random.Random(seed)
    rows = [
        {"image": str(p), "locale": loc} for p in sorted(images_dir.glob("*.jpg"))[:6] for loc in ("en-US", "en-GB")
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = {i.key for i in iter_items(manifest, style="alt_text", locale="en-US")}
    assert len(expected) == len(rows) == 12
    log = tmp_path / "job.log"

    mid_run_kills = 0
    for attempt in range(4):
        # A retry means every kill came too late (a fast machine): start over in a new folder, killing sooner.
        out = tmp_path / f"attempt{attempt}" / ("out.jsonl" if fmt == "jsonl" else "out.parquet")
        out.parent.mkdir()
        if fmt == "jsonl" and attempt == 0:  # 1. during start-up (models loading, log being opened), at a random moment
            proc = _start(manifest, out, fmt, log)
            time.sleep(rng.uniform(0.2, 4.0))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        # 2.. after a random number of durable records, plus a random delay
        for _ in range(2 if fmt == "jsonl" else 1):  # each restart reloads the models: keep the count small
            have = _records_on_disk(out, fmt)
            last = len(expected) - 3 if attempt == 0 else have + 1
            target = rng.randint(have + 1, max(have + 1, last))
            proc = _start(manifest, out, fmt, log)
            killed = _kill_after_records(proc, out, fmt, target, rng.uniform(0, 0.4) / (1 + attempt * 4))
            if killed:
                now = _records_on_disk(out, fmt)
                mid_run_kills += now < len(expected)
                counts = Counter(r["key"] for r in read_records(out))
                assert all(v == 1 for v in counts.values()), "a key was written twice before the re-run"
        if mid_run_kills:
            break
    assert mid_run_kills >= 1, "no kill landed in the middle of the job in 4 attempts"

    proc = _start(manifest, out, fmt, log)
    assert proc.wait(timeout=900) in (0, 1), log.read_text()[-3000:]
    counts = Counter(r["key"] for r in read_records(out))
    assert set(counts) == expected, f"missing {expected - set(counts)}, extra {set(counts) - expected}"
    assert set(counts.values()) == {1}, [k for k, v in counts.items() if v > 1]
    if fmt == "jsonl":
        data = out.read_bytes()
        assert data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines())
    else:
        assert not list(out.glob("*.tmp"))
    finished = [json.loads(line) for line in log.read_text().splitlines() if '"job finished"' in line]
    assert finished and finished[-1]["summary"]["already_done"] + finished[-1]["summary"]["written"] == 12
