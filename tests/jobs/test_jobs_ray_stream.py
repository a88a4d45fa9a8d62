"""The streaming Ray runner on a real multi-process Ray cluster (`ray start --head` + a second node process on
loopback): Ray reads the input, workers key rows (fetching s3:// bytes from a real moto server), the draft step
lands on the node holding the stand-in GPU resource, real bundled backends caption as the local runner does,
and a SIGKILLed driver re-run leaves every row exactly once."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from datasets_helpers import MotoServer, write_shard
from ray_cluster import CLUSTER_ENV, RayCluster

from caption_agent.config import AgentConfig
from caption_agent.jobs import CaptionJobOptions, read_records, run_caption_job
from caption_agent.jobs.engine import JobOptions, run_job
from caption_agent.jobs.manifest import iter_items
from caption_agent.jobs.ray_sources import RaySource, StepSpec
from caption_agent.jobs.sources import SourceOptions
from caption_agent.jobs.stages import StageSpec

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
HERE = Path(__file__).resolve().parent
FAKE_GPU = "fake_gpu"  # a custom resource standing in for a GPU: only the worker node has one
PROBE = "caption_agent.jobs.pipeline_steps:ProbeStep"
NOOP = "caption_agent.jobs.pipeline_steps:NoopStep"
SPEC = StageSpec(stage="unused:Unused", item="caption_agent.jobs.manifest:CaptionItem")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in CLUSTER_ENV}
    os.environ.update(CLUSTER_ENV)
    c = RayCluster(tmp_path_factory.mktemp("ray"), head_cpus=2, worker_cpus=1, worker_resources={FAKE_GPU: 1})
    try:
        ray.init(address=c.address, log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _manifest(tmp_path: Path, images_dir: Path, n: int, bad: bool = True) -> Path:
    images = sorted(images_dir.glob("*.jpg"))[:3]
    rows = [json.dumps({"image": str(images[i % len(images)]), "id": f"r{i}"}) for i in range(n)]
    if bad:
        rows += ['{"image": 12', json.dumps({"image": str(tmp_path / "missing.jpg"), "id": "missing"})]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def _worker_node() -> str:
    return next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get(FAKE_GPU))


def test_draft_step_runs_on_the_gpu_node_and_every_row_is_answered(tmp_path, images_dir, cluster):
    manifest = _manifest(tmp_path, images_dir, 30)
    source = RaySource(
        inputs=[str(manifest)], style="alt_text", locale="en-US", limits={}, steps=(StepSpec(PROBE, {}, "draft"),)
    )
    options = JobOptions(
        out=tmp_path / "out.jsonl",
        runner="ray",
        ray_address=cluster.address,
        batch_size=4,
        ray_concurrency=1,
        ray_draft_cpus=0.5,
        ray_resources={FAKE_GPU: 1},
        progress=False,
    )
    summary = run_job("caption", iter(()), None, SPEC, options, fingerprint="t", source=source)
    assert summary.total == 32 and summary.written == 32 and summary.errors == 1, summary
    records = list(read_records(tmp_path / "out.jsonl"))
    expected = {i.key for i in iter_items(manifest, style="alt_text", locale="en-US")}
    assert {r["key"] for r in records} == expected and len(records) == 32
    ran = [r for r in records if r["status"] == "ok"]
    worker = _worker_node()
    assert len(ran) == 31 and {r["ray"]["node_id"] for r in ran} == {worker}  # missing.jpg: hashed as missing
    assert all(r["ray"]["resources"].get(FAKE_GPU) == 1 for r in ran)
    again = run_job("caption", iter(()), None, SPEC, options, fingerprint="t", source=source)
    assert again.already_done == 32 and again.written == 0  # workers dropped the done keys


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    pytest.importorskip("s3fs")
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


def test_s3_shards_are_read_and_keyed_in_the_workers(tmp_path, images_dir, cluster, moto):
    fs = moto.filesystem("wds")
    for n in range(2):
        shard = write_shard(
            tmp_path / f"s-{n}.tar",
            [
                {"key": f"{n}{k:04d}", "image": (images_dir / "coffee.jpg").read_bytes(), "txt": f"c{k}"}
                for k in range(5)
            ]
            + [{"key": f"{n}9999", "txt": "no image"}],
        )
        fs.put(str(shard), f"wds/s-{n}.tar")
    pattern = "s3://wds/s-{0..1}.tar"
    sources = SourceOptions(storage_options=moto.storage_options)
    source = RaySource(
        inputs=[pattern], style="alt_text", locale="en-US", limits={}, sources=sources, steps=(StepSpec(NOOP),)
    )
    options = JobOptions(out=tmp_path / "s3.jsonl", runner="ray", ray_address=cluster.address, progress=False)
    summary = run_job("caption", iter(()), None, SPEC, options, fingerprint="t", source=source)
    assert summary.written == 12 and summary.errors == 2, summary
    expected = {i.key for i in iter_items(pattern, style="alt_text", locale="en-US", sources=sources)}
    records = list(read_records(tmp_path / "s3.jsonl"))
    assert {r["key"] for r in records} == expected and len(records) == 12
    assert {r["original"] for r in records if r["status"] == "ok"} == {f"c{k}" for k in range(5)}


def test_real_pipeline_on_the_cluster_matches_the_local_runner(tmp_path, images_dir, cluster):
    """Real bundled backends (lite drafter, consensus ranker, policy) as three steps; the draft actor needs the
    stand-in GPU, so it runs on the worker node."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        shutil.copy(images_dir / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    write_shard(tmp_path / "s.tar", [{"key": "k1", "image": (folder / "chelsea.jpg").read_bytes(), "txt": "a cat"}])
    cfg = AgentConfig.load(refiner={"backend": "none"})
    ray_opts = dict(
        runner="ray", ray_address=cluster.address, batch_size=2, ray_resources={FAKE_GPU: 1}, ray_draft_cpus=0.5
    )
    out = tmp_path / "ray.jsonl"
    summary = run_caption_job(folder, CaptionJobOptions(out=out, progress=False, **ray_opts), cfg)
    assert summary.written == 3 and summary.errors == 1, summary
    shard_out = tmp_path / "ray_shard.jsonl"
    run_caption_job(str(tmp_path / "s.tar"), CaptionJobOptions(out=shard_out, progress=False, **ray_opts), cfg)
    local, local_shard = tmp_path / "local.jsonl", tmp_path / "local_shard.jsonl"
    run_caption_job(folder, CaptionJobOptions(out=local, batch_size=2, progress=False), cfg)
    run_caption_job(str(tmp_path / "s.tar"), CaptionJobOptions(out=local_shard, progress=False), cfg)
    for ray_path, local_path in ((out, local), (shard_out, local_shard)):
        remote = {r["key"]: r for r in read_records(ray_path)}
        mine = {r["key"]: r for r in read_records(local_path)}
        assert set(remote) == set(mine)
        for key, r in mine.items():
            assert remote[key]["status"] == r["status"] and remote[key].get("text") == r.get("text")
            assert remote[key].get("original") == r.get("original")


def _driver(manifest: Path, out: Path, address: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, **CLUSTER_ENV}
    return subprocess.Popen(
        [sys.executable, str(HERE / "stream_driver.py"), str(manifest), str(out), address, "burn", "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log, "ab"),  # noqa: SIM115 - closed with the process
    )


def _lines(out: Path) -> int:
    return out.read_bytes().count(b"\n") if out.is_file() else 0


def test_sigkill_the_driver_then_rerun_leaves_every_row_once(tmp_path, images_dir, cluster):
    seed = int(os.environ.get("CAPTION_AGENT_TEST_KILL_SEED", random.randrange(1 << 30)))
    print(f"kill seed: {seed}")
    rng = random.Random(seed)
    manifest = _manifest(tmp_path, images_dir, 400)
    expected = {i.key for i in iter_items(manifest, style="alt_text", locale="en-US")}
    out, log = tmp_path / "out.jsonl", tmp_path / "driver.log"
    kills = 0
    for _ in range(2):
        have = _lines(out)
        target = have + rng.randint(5, 60)
        proc = _driver(manifest, out, cluster.address, log)
        deadline = time.monotonic() + 300
        while proc.poll() is None and _lines(out) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            time.sleep(rng.uniform(0, 0.3))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += _lines(out) < len(expected)
        counts = Counter(r["key"] for r in read_records(out))
        assert set(counts.values()) <= {1}, "a key was written twice before the re-run"
    assert kills >= 1, log.read_text()[-3000:]
    proc = _driver(manifest, out, cluster.address, log)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log.read_text()[-3000:]
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    counts = Counter(r["key"] for r in read_records(out))
    assert set(counts) == expected, f"lost {len(expected - set(counts))}, extra {len(set(counts) - expected)}"
    assert set(counts.values()) == {1}
    assert summary["already_done"] + summary["written"] == len(expected) == 402
