"""The default path where people feel it: cold CLI, a batch of distinct photos against its models' limit, and the
service under concurrent single-caption clients. Each part can run under a second interpreter (another checkout's
venv, e.g. main's) alternately with this one in the same run, so "before" and "after" share the machine's load.

    .venv/bin/python -P benchmarks/bench_default_path.py [--quick] [--parts cold,batch,serve]
        [--baseline-python /work/main/.venv/bin/python] [--out r.json]

1. cold: ``caption-agent caption one.jpg`` in a new process (model cache already built), p50 of ``--repeats``;
   plus one in-process breakdown run that lists the heavy modules the default path imported (torch or not).
2. batch: images/s of ``CaptionAgent().caption_batch`` over ``--items`` distinct photos (crops of the bundled real
   photos at varied sizes, written once as JPEG files), against the sum-of-stages limit measured in the same
   process on the same working copies: each model's raw rate (lite classifier, MTCNN, NudeNet, the ranker's
   embedder) at its best batch size and thread layout, combined as 1 / sum(1 / rate).
3. serve: ``caption-agent serve`` (defaults) with ``--clients`` concurrent clients sending single captions back to
   back; p50/p95 latency and requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGES = sorted((ROOT / "examples" / "images").glob("*.jpg"))
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
sys.path.insert(0, str(HERE))  # the sibling benchmarks (bench_coldstart, bench_serve), also under python -P


def make_photos(folder: Path, n: int, seed: int = 7) -> list[Path]:
    """``n`` distinct JPEGs: random crops (40-100 % of each side) of the bundled photos, scaled so the long side is
    320-1024 px. Distinct bytes and content, so no stage can share work between items."""
    from PIL import Image

    rng = random.Random(seed)
    sources = [Image.open(p).convert("RGB") for p in IMAGES]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.4, 1.0)), int(h * rng.uniform(0.4, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = src.crop((x, y, x + cw, y + ch))
        side = rng.randint(320, 1024)
        scale = side / max(cw, ch)
        crop = crop.resize((max(16, int(cw * scale)), max(16, int(ch * scale))), Image.Resampling.BILINEAR)
        path = folder / f"photo-{i:04d}.jpg"
        crop.save(path, "JPEG", quality=88)
        out.append(path)
    return out


# ------------------------------------------------------------------------------------------------------ cold start
def _wall(cmd: list[str], cpu: list[float] | None = None) -> float:
    """Wall seconds of ``cmd``; its CPU seconds (user + system, all threads) appended to ``cpu``: on a shared
    machine the CPU time is what a quiet one would take, the wall time what this one took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV}, cwd=ROOT, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-3:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def cold(pythons: dict[str, str], image: Path, repeats: int) -> dict[str, Any]:
    from bench_coldstart import _BREAKDOWN

    clis = {label: [str(Path(py).with_name("caption-agent")), "caption", str(image)] for label, py in pythons.items()}
    setup = {label: round(_wall(cmd), 2) for label, cmd in clis.items()}  # fills the model cache if needed
    times: dict[str, list[float]] = {label: [] for label in pythons}
    cpus: dict[str, list[float]] = {label: [] for label in pythons}
    for i in range(repeats):
        for label in list(clis) if i % 2 == 0 else list(clis)[::-1]:
            times[label].append(_wall(clis[label], cpus[label]))
    out: dict[str, Any] = {"image": image.name, "repeats": repeats, "setup_run_s": setup}
    for label, py in pythons.items():
        proc = subprocess.run(
            [py, "-c", _BREAKDOWN, str(image)], capture_output=True, text=True, env={**os.environ, **ENV}, cwd=ROOT
        )
        breakdown = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else proc.stderr[-400:]
        out[label] = {
            "cli_s": [round(s, 2) for s in times[label]],
            "cli_p50_s": round(statistics.median(times[label]), 2),
            "cli_cpu_p50_s": round(statistics.median(cpus[label]), 2),
            "breakdown": breakdown,
        }
    return out


# ----------------------------------------------------------------------------------------------------------- batch
def _best_rate(call: Callable[[list[Any]], Any], items: list[Any], batches: Sequence[int]) -> dict[str, Any]:
    """Items/s of ``call`` over ``items`` in chunks of each batch size (after one warm-up chunk); the best wins."""
    rates = {}
    for size in batches:
        call(items[:size])
        t0 = time.perf_counter()
        for start in range(0, len(items), size):
            call(items[start : start + size])
        rates[size] = len(items) / (time.perf_counter() - t0)
    best = max(rates, key=lambda k: rates[k])
    return {"per_s": round(rates[best], 2), "batch": best, "by_batch": {str(k): round(v, 2) for k, v in rates.items()}}


def batch(photos: list[Path]) -> dict[str, Any]:
    """Runs in the interpreter under test: the pipeline's rate, each model's raw rate on the same copies, then the
    pipeline's rate again (its rate is the mean of both runs)."""
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.images import load_image

    agent = CaptionAgent(AgentConfig.load())
    agent.caption_batch([str(p) for p in photos[:2]])  # load every model outside the clock

    def timed_batch() -> tuple[float, list[Any]]:
        t0 = time.perf_counter()
        out = agent.caption_batch([str(p) for p in photos])
        return time.perf_counter() - t0, out

    before_s, results = timed_batch()
    statuses = [r.status for r in results]

    t0 = time.perf_counter()
    copies = [load_image(str(p), agent.config.images)[0] for p in photos]
    decode_per_s = len(photos) / (time.perf_counter() - t0)
    rule = next(r for r in agent.policy.rules(agent.config.default_style) if r.name == "image_safety")
    drafter = agent.drafter
    texts = [[c.text for c in r.candidates] for r in results if r.candidates]
    stages = _layouts(drafter, rule.config, copies)
    stages["embedder (ranking)"] = _best_rate(
        lambda groups: agent.embedder.encode([t for g in groups for t in g]), texts or [["a"]], (1, 16, 64)
    )
    limit = 1.0 / sum(1.0 / s["per_s"] for s in stages.values())
    # The pipeline again after the models: the two runs bracket the limit's, so a machine that drifts faster or
    # slower during the run moves both sides alike.
    after_s, again = timed_batch()
    assert [r.status for r in again] == statuses, "the same photos got other statuses on the second run"
    pipeline = 2 * len(photos) / (before_s + after_s)
    return {
        "items": len(photos),
        "pipeline_images_per_s": round(pipeline, 2),
        "pipeline_runs_images_per_s": [round(len(photos) / before_s, 2), round(len(photos) / after_s, 2)],
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "stages": stages,
        "decode_images_per_s": round(decode_per_s, 2),
        "sum_of_stages_limit_per_s": round(limit, 2),
        "pipeline_vs_limit": round(pipeline / limit, 3),
        "torch_imported": "torch" in sys.modules,
    }


def _layouts(drafter: Any, cfg: Any, copies: list[Any]) -> dict[str, dict[str, Any]]:
    """Each vision model's raw rate at its best batch size and thread layout: one session with one intra-op thread
    per core called from one thread, or one-thread sessions called by one thread per core at once (sessions allow
    concurrent runs). The embedder already runs the second way (one batch per core)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from caption_agent.drafters.lite_model import Lite0
    from caption_agent.faces import FaceDetector
    from caption_agent.nudenet_onnx import NudeNet

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def calls(threads: int) -> dict[str, Callable[[Any], Any]]:
        lite, mtcnn, nudenet = Lite0("onnx", threads), FaceDetector(threads=threads), NudeNet(threads)
        return {
            "lite classifier": lambda ims: lite(np.stack([drafter._preprocess(im) for im in ims])),
            "mtcnn": lambda im: mtcnn.detect(im, min_face_px=cfg.face_min_px, score=cfg.face_score),
            "nudenet": lambda im: nudenet.detect(np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])),
        }

    out: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(cores) as pool:
        whole, single = calls(cores), calls(1)
        for name in whole:
            if name == "lite classifier":  # batched: one batch per call
                one_session = _best_rate(whole[name], copies, (1, 8, 32))
                per_core = _best_rate(
                    lambda ims, f=single[name]: list(pool.map(f, [ims[i::cores] for i in range(cores)])),
                    copies,
                    (cores, 8 * cores),
                )
            else:
                one_session = _best_rate(lambda ims, f=whole[name]: [f(im) for im in ims], copies, (1,))
                per_core = _best_rate(lambda ims, f=single[name]: list(pool.map(f, ims)), copies, (cores, 4 * cores))
            threads = {"one session, intra-op threads = cores": one_session, "1 thread x cores callers": per_core}
            out[name] = {**max(threads.values(), key=lambda r: r["per_s"]), "threads": threads}
    return out


# ----------------------------------------------------------------------------------------------------------- serve
def serve(photos: list[Path], clients: int, requests: int) -> dict[str, Any]:
    """Runs in the interpreter under test: a server on the defaults, ``clients`` closed-loop clients."""
    import bench_serve
    import httpx

    bodies = [p.read_bytes() for p in photos]
    port = bench_serve._free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = bench_serve.start_server(port, queue_size=4 * clients, workdir=Path(tmp), refiner=None)
        try:
            startup = bench_serve.wait_ready(url, proc)
            asyncio.run(bench_serve.closed_loop(url, bodies, 2 * clients, clients))  # warm up
            result = asyncio.run(bench_serve.closed_loop(url, bodies[2 * clients :], requests, clients))
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"startup_s": round(startup, 1), **result, "mean_batch_size": bench_serve.mean_batch_size(metrics)}


# ------------------------------------------------------------------------------------------------------------ main
def _child(python: str, part: str, args: list[str]) -> dict[str, Any]:
    """Run ``part`` of this file under ``python`` (its own venv, its own checkout's package)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [python, "-P", str(Path(__file__)), "--child", part, "--out", str(out), *args]
        env = {**os.environ, **ENV}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{part} under {python} failed: {proc.stderr.strip()[-1500:]}")
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result


def run(
    parts: Sequence[str], pythons: dict[str, str], items: int, repeats: int, clients: int, requests: int
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "interpreters": pythons,
    }
    with tempfile.TemporaryDirectory(prefix="bench-default-") as tmp:
        folder = Path(tmp) / "photos"
        make_photos(folder, max(items, requests + 2 * clients))
        if "cold" in parts:
            report["cold"] = cold(pythons, ROOT / "examples" / "images" / "coffee.jpg", repeats)
            print(json.dumps({"cold": report["cold"]}), file=sys.stderr, flush=True)
        for part, extra in (
            ("batch", ["--items", str(items)]),
            ("serve", ["--clients", str(clients), "--requests", str(requests)]),
        ):
            if part in parts:
                report[part] = {}
                for label, py in pythons.items():
                    report[part][label] = _child(py, part, [*extra, "--photos", str(folder)])
                    report[part][label]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
                    # Each part as it finishes, on stderr: a long run on a busy machine keeps what it measured.
                    print(json.dumps({part: {label: report[part][label]}}), file=sys.stderr, flush=True)
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 items, 1 cold repeat, 24 service requests.")
    parser.add_argument("--parts", default="cold,batch,serve")
    parser.add_argument("--items", type=int, default=None, help="Distinct photos in the batch (200; 40 quick).")
    parser.add_argument("--repeats", type=int, default=None, help="Cold CLI runs per interpreter (5; 1 quick).")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=None, help="Service requests timed (80; 24 quick).")
    parser.add_argument("--baseline-python", default=None, help="A second venv's python, run alternately.")
    parser.add_argument("--photos", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    items = args.items or (40 if args.quick else 200)
    requests = args.requests or (24 if args.quick else 80)
    if args.child:
        photos = sorted(args.photos.glob("*.jpg"))
        result = batch(photos[:items]) if args.child == "batch" else serve(photos, args.clients, requests)
    else:
        pythons = {"this": sys.executable}
        if args.baseline_python:
            pythons["baseline"] = args.baseline_python
        parts = [p.strip() for p in args.parts.split(",") if p.strip()]
        result = run(parts, pythons, items, args.repeats or (1 if args.quick else 5), args.clients, requests)
    text = json.dumps(result, indent=1)
    if not args.child:
        print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
