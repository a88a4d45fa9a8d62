"""The Ray Data runner on a local Ray instance: same stages as map_batches, same exactly-once output."""

from __future__ import annotations

import json
import shutil
import socket
from collections import Counter

import pytest
from ray_cluster import CLUSTER_ENV

from caption_agent.config import AgentConfig
from caption_agent.jobs import CaptionJobOptions, LocalizeJobOptions, read_records, run_caption_job, run_localize_job
from caption_agent.jobs.manifest import iter_items

ray = pytest.importorskip("ray")
pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


@pytest.fixture(scope="module")
def local_ray(monkeypatch_module):
    # Without a token, like the loopback cluster of test_jobs_ray_stream: ray.init would otherwise switch this
    # process to token auth (RAY_AUTH_MODE=token, kept after shutdown), and a later driver in the same process
    # could not run actors on a cluster started without it.
    for key, value in CLUSTER_ENV.items():
        monkeypatch_module.setenv(key, value)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_ray_localize_job_streams_records_to_the_same_log(tmp_path, local_ray):
    """A cheap stage (the real vLLM client against a closed port) over several Ray batches and two actors."""
    pytest.importorskip("langchain_openai")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    captions = tmp_path / "captions.jsonl"
    captions.write_text(
        "".join(json.dumps({"id": f"c{i}", "text": f"A ceramic cup number {i} on a table."}) + "\n" for i in range(10))
    )
    cfg = AgentConfig.load(
        refiner={
            "backend": "vllm",
            "on_unavailable": "error",  # a down server fails its items (retryable) instead of passing them on
            "vllm": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "max_retries": 0, "timeout_s": 5},
        }
    )
    opts = dict(
        out=tmp_path / "out.jsonl",
        locales=["de-DE", "fr-FR"],
        runner="ray",
        batch_size=4,
        ray_concurrency=2,
        progress=False,
    )
    summary = run_localize_job(captions, LocalizeJobOptions(**opts, limit=12), cfg)
    assert summary.written == 12
    summary = run_localize_job(captions, LocalizeJobOptions(**opts), cfg)
    assert summary.already_done == 12 and summary.written == 8
    records = list(read_records(tmp_path / "out.jsonl"))
    assert len(records) == 20 and set(Counter(r["key"] for r in records).values()) == {1}
    assert {r["error"]["type"] for r in records} == {"RefinerUnavailableError"}


def test_ray_caption_job_matches_the_local_runner(tmp_path, images_dir, local_ray):
    """The real pipeline (lite drafter, no refiner) in Ray actors; records equal the local runner's."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        shutil.copy(images_dir / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    cfg = AgentConfig.load(refiner={"backend": "none"})
    out = tmp_path / "ray.jsonl"
    summary = run_caption_job(folder, CaptionJobOptions(out=out, runner="ray", batch_size=2, progress=False), cfg)
    assert summary.written == 4 and summary.errors == 1
    expected = {i.key for i in iter_items(folder, style="alt_text", locale="en-US")}
    records = {r["key"]: r for r in read_records(out)}
    assert set(records) == expected
    assert (
        records[next(k for k, r in records.items() if r["source"].endswith("broken.jpg"))]["error"]["type"]
        == "InvalidImageError"
    )
    again = run_caption_job(folder, CaptionJobOptions(out=out, runner="ray", progress=False), cfg)
    assert again.already_done == 4 and again.written == 0
    local = tmp_path / "local.jsonl"
    run_caption_job(folder, CaptionJobOptions(out=local, batch_size=2, progress=False), cfg)
    for r in read_records(local):
        assert records[r["key"]]["status"] == r["status"]
        assert records[r["key"]].get("text") == r.get("text")  # same models, same inputs: same captions
