"""The streaming Ray runner on a real multi-process Ray cluster (`ray start --head` + a second node process on
loopback): Ray reads the input, workers key rows (fetching s3:// bytes from a real moto server), the draft step
lands on the node holding the stand-in GPU resource, real bundled backends caption as the local runner does,
rows asking for the same computation share one (counted by the step itself), and a SIGKILLed driver re-run
leaves every row exactly once."""

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
from stream_driver import FAIL_CHARS

from caption_agent.config import AgentConfig
from caption_agent.jobs import CaptionJobOptions, read_records, run_caption_job
from caption_agent.jobs.engine import JobOptions, run_job
from caption_agent.jobs.manifest import iter_items
from caption_agent.jobs.ray_driver import SharedResults
from caption_agent.jobs.ray_sources import RaySource, StepSpec
from caption_agent.jobs.ray_stream import ClaimLedger, _digest
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


def _manifest(tmp_path: Path, images_dir: Path, n: int, bad: bool = True, pairs: bool = False) -> Path:
    """``n`` rows over 3 images, each with its own id: 3 computations, or with ``pairs`` one per two rows."""
    images = sorted(images_dir.glob("*.jpg"))[:3]
    if pairs:  # rows 2k and 2k+1 ask the same (image, max_chars); the next pair asks something else
        asks = [{"image": str(images[i // 2 % 3]), "max_chars": 40 + i // 2} for i in range(n)]
    else:
        asks = [{"image": str(images[i % len(images)])} for i in range(n)]
    rows = [json.dumps({**ask, "id": f"r{i}"}) for i, ask in enumerate(asks)]
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
    assert summary.duplicates == 27  # 30 rows over 3 images: 3 computations (missing.jpg: a 4th)
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


def _driver(manifest: Path | str, out: Path, address: str, log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, **CLUSTER_ENV}
    return subprocess.Popen(
        [sys.executable, str(HERE / "stream_driver.py"), str(manifest), str(out), address, *(args or ("burn", "40"))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log, "ab"),  # noqa: SIM115 - closed with the process
    )


def _run_driver(manifest: Path | str, out: Path, address: str, log: Path, *args: str) -> dict:
    proc = _driver(manifest, out, address, log, *args)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


def _lines(out: Path) -> int:
    return out.read_bytes().count(b"\n") if out.is_file() else 0


def test_sigkill_the_driver_then_rerun_leaves_every_row_once(tmp_path, images_dir, cluster):
    seed = int(os.environ.get("CAPTION_AGENT_TEST_KILL_SEED", random.randrange(1 << 30)))
    print(f"kill seed: {seed}")
    rng = random.Random(seed)
    manifest = _manifest(tmp_path, images_dir, 400, pairs=True)  # 200 computations, 200 copies
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
    summary = _run_driver(manifest, out, cluster.address, log)
    counts = Counter(r["key"] for r in read_records(out))
    assert set(counts) == expected, f"lost {len(expected - set(counts))}, extra {len(set(counts) - expected)}"
    assert set(counts.values()) == {1}
    assert summary["already_done"] + summary["written"] == len(expected) == 402
    _assert_copies_name_their_original(list(read_records(out)))


def _assert_copies_name_their_original(records: list[dict]) -> None:
    by_key = {r["key"]: r for r in records}
    for r in records:
        if "duplicate_of" in r:
            original = by_key[r["duplicate_of"]]
            assert r["cached"] is True and "duplicate_of" not in original
            assert (r["status"], r.get("text"), r.get("error")) == (
                original["status"],
                original.get("text"),
                original.get("error"),
            )


def _shards(tmp_path: Path, images_dir: Path) -> str:
    """Two shards of the same 12 samples (3 images x 2 old captions, each twice) plus one without an image."""
    images = [p.read_bytes() for p in sorted(images_dir.glob("*.jpg"))[:3]]
    for n in range(2):
        samples = [{"key": f"{n}{k:04d}", "image": images[k % 3], "txt": f"old {k % 2}"} for k in range(12)]
        write_shard(tmp_path / f"d-{n}.tar", [*samples, {"key": f"{n}9999", "txt": "no image"}])
    return str(tmp_path / "d-{0..1}.tar")


def test_duplicate_rows_across_shards_share_one_computation(tmp_path, images_dir, cluster):
    """24 rows over 6 computations, in two shards read by two tasks and keyed by two actors sharing the claims:
    the step runs 6 times (it counts), the other 18 rows get copies naming the computed row."""
    pattern = _shards(tmp_path, images_dir)
    counter, out, log = tmp_path / "computed.txt", tmp_path / "out.jsonl", tmp_path / "driver.log"
    summary = _run_driver(
        pattern, out, cluster.address, log, "count", str(counter), "--batch", "4", "--key-actors", "2"
    )
    items = {i.key: i for i in iter_items(pattern, style="alt_text", locale="en-US")}
    records = list(read_records(out))
    assert len(records) == 26 and {r["key"] for r in records} == set(items)
    computed = counter.read_text().split()
    good = {i.cache_key for i in items.values() if not i.error}
    assert len(good) == 6 and len(computed) == 6 and {items[k].cache_key for k in computed} == good
    copies = [r for r in records if "duplicate_of" in r]
    assert len(copies) == 18 and all(r["cached"] is True and r["status"] == "ok" for r in copies)
    for r in records:
        if r["status"] == "ok":  # each record's text is the cache key of the computation it came from
            assert r["text"] == items[r["key"]].cache_key
            assert r.get("duplicate_of", r["key"]) in computed
    assert {r["key"] for r in records if r["status"] == "ok" and "duplicate_of" not in r} == set(computed)
    _assert_copies_name_their_original(records)
    assert summary["duplicates"] == 18 and summary["written"] == 26 and summary["errors"] == 2, summary
    assert summary["cached"] == 18


def test_rerun_computes_again_what_only_done_rows_had_and_copies_errors(tmp_path, images_dir, cluster):
    """Run 1 answers the first 6 rows (6 computations, 2 of them errors); run 2 answers the other 14: a row whose
    computation only done rows had is computed again once, and the rest copy it, error records included."""
    images = sorted(images_dir.glob("*.jpg"))[:2]
    asks = [{"image": str(images[i % 2]), "max_chars": (40, 41, FAIL_CHARS)[i % 3]} for i in range(20)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({**a, "id": f"r{i}"}) + "\n" for i, a in enumerate(asks)))
    counter, out, log = tmp_path / "computed.txt", tmp_path / "out.jsonl", tmp_path / "driver.log"
    first = _run_driver(manifest, out, cluster.address, log, "count", str(counter), "--batch", "4", "--limit", "6")
    assert first["written"] == 6 and first["duplicates"] == 0 and first["errors"] == 2, first
    assert len(counter.read_text().split()) == 6
    second = _run_driver(manifest, out, cluster.address, log, "count", str(counter), "--batch", "4")
    assert second["already_done"] == 6 and second["written"] == 14 and second["duplicates"] == 8, second
    items = {i.key: i for i in iter_items(manifest, style="alt_text", locale="en-US")}
    computed = counter.read_text().split()
    assert len(computed) == 12 and Counter(items[k].cache_key for k in computed) == Counter(
        {i.cache_key: 2 for i in items.values()}
    )  # once per run
    records = list(read_records(out))
    assert Counter(r["key"] for r in records) == Counter(set(items))
    errors = [r for r in records if r["status"] == "error"]
    assert len(errors) == 2 + 4 and second["errors"] == 4  # rows 2, 5 in run 1; 8, 11, 14, 17 in run 2
    assert sum("duplicate_of" in r for r in errors) == 2  # 14 and 17 copy 8 and 11
    assert all(r["error"]["message"] == items[r["key"]].cache_key for r in errors)
    _assert_copies_name_their_original(records)


def test_claims_ledger_answers_first_claims_through_its_bulk_merges():
    """Not through Ray: the ledger's bookkeeping over more claims than one merge holds (65,536), digests ending in
    NUL bytes (numpy's fixed-width bytes drop them), and a row claiming again (a retried task)."""
    import random

    ledger = ClaimLedger()
    rng = random.Random(7)
    owners: dict[bytes, bytes] = {}
    for _ in range(1500):  # 150,000 claims over 90,000 computations: two merges, then claims against the array
        claims = [(_digest(str(rng.randrange(90_000)), 16), _digest(str(rng.random()), 8)) for _ in range(100)]
        assert ledger.claim(claims) == [owners.setdefault(c, r) == r for c, r in claims]
    cache, row = next(iter(owners.items()))
    assert ledger.claim([(cache, row), (cache, b"x" * 8)]) == [True, False]
    nul = (b"a" * 15 + b"\0", b"b" * 7 + b"\0")
    assert ledger.claim([nul, nul, (nul[0], b"c" * 8)]) == [True, True, False]


def test_shared_results_spill_what_memory_evicts():
    shared = SharedResults(size=3)
    records = {f"c{i}": {"key": f"k{i}", "status": "error" if i % 2 else "ok"} for i in range(2000)}
    try:
        for cache_key, record in records.items():
            shared.put(cache_key, record)
        assert all(shared.get(k) == r for k, r in records.items())  # memory, not yet spilled, and the spill file
        assert shared.get("unknown") is None
    finally:
        shared.close()


def test_read_tasks_key_their_rows_as_the_local_runner_does(tmp_path, images_dir, cluster):
    """The datasource's read task keys its rows itself (no key actor after it), in blocks of ``block_rows``, with
    the local runner's keys; an unusable row becomes an error record, a done key (from the object store) a skip."""
    from caption_agent.jobs.ray_sources import make_datasource
    from caption_agent.jobs.ray_stream import KeyStep

    manifest = _manifest(tmp_path, images_dir, 5)  # 5 rows, then 2 unusable ones
    source = RaySource(inputs=[str(manifest)], style="alt_text", locale="en-US", limits={}, block_rows=3)
    (task,) = make_datasource(source, KeyStep(source).key_rows).get_read_tasks(1)
    blocks = [block.to_pydict() for block in task()]
    assert [len(b["key"]) for b in blocks] == [3, 3, 1]
    rows = {k: (p, r) for b in blocks for k, p, r in zip(b["key"], b["payload"], b["record"])}
    items = list(iter_items(manifest, style="alt_text", locale="en-US"))
    assert list(rows) == [i.key for i in items]
    assert [bool(p) for p, _ in rows.values()] == [not i.error for i in items]
    errors = [json.loads(r) for p, r in rows.values() if not p]
    assert len(errors) == 1 and errors[0]["status"] == "error"  # '{"image": 12' (a missing file fails later)
    (done,) = make_datasource(source, KeyStep(source, [ray.put(frozenset(rows))]).key_rows).get_read_tasks(1)
    assert all(all(b["skip"].to_pylist()) and not any(b["payload"].to_pylist()) for b in done())
