"""Load test of `caption-agent serve` on loopback: the sustainable rate, then open-loop load at 1x, 4x and 16x.

The server runs in its own process (lite drafter, refiner none, no catalog: the path a CMS upload hook takes
when drafts are enough); the client is an asyncio httpx loop in this process. Bounded in count and time.

1. Closed loop: ``CONCURRENCY`` clients send requests back to back; throughput = sustainable rate R.
2. Open loop at m x R for m in (1, 4, 16): requests start on a fixed schedule whatever the replies do, for
   ``duration`` seconds (at most ``cap`` requests). Reported: p50/p95 latency of 200s, share of 429s, others.

    .venv/bin/python benchmarks/bench_serve.py --quick --out bench_serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
IMAGES = ["chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "flower.jpg", "china.jpg"]
CONCURRENCY = 4


def _images(side: int = 320) -> list[bytes]:
    from PIL import Image

    out = []
    for name in IMAGES:
        image = Image.open(REPO / "examples" / "images" / name).convert("RGB")
        image.thumbnail((side, side))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, queue_size: int, workdir: Path, refiner: str | None = "none") -> subprocess.Popen:
    """``caption-agent serve`` on loopback; ``refiner`` None keeps the config's default refiner."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "CAPTION_AGENT_SERVICE_QUEUE_SIZE": str(queue_size),
        "CAPTION_AGENT_SERVICE_REQUEST_TIMEOUT_S": "30",
    }
    cmd = [
        sys.executable,
        "-m",
        "caption_agent.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if refiner is not None:
        cmd += ["--refiner", refiner]
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 180) -> float:
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError("server not ready")


async def _one(client: Any, data: bytes, out: list[tuple[int, float]]) -> None:
    t0 = time.perf_counter()
    try:
        reply = await client.post("/v1/captions", files={"image": ("i.jpg", data, "image/jpeg")})
        status = reply.status_code
    except Exception:  # noqa: BLE001 - a transport failure is reported as status 0
        status = 0
    out.append((status, time.perf_counter() - t0))


async def closed_loop(url: str, images: list[bytes], n: int, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    import httpx

    done: list[tuple[int, float]] = []
    counter = iter(range(n))

    async def worker(client: Any) -> None:
        for i in counter:
            await _one(client, images[i % len(images)], done)

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ok = [lat for status, lat in done if status == 200]
    return {
        "requests": n,
        "concurrency": concurrency,
        "ok": len(ok),
        "wall_s": round(wall, 2),
        "rate_rps": round(len(ok) / wall, 2),
        **_percentiles(ok),
    }


async def open_loop(url: str, images: list[bytes], rate: float, duration_s: float, cap: int) -> dict[str, Any]:
    import httpx

    n = max(1, min(cap, int(rate * duration_s)))
    done: list[tuple[int, float]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(client, images[i % len(images)], done)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    statuses = [status for status, _ in done]
    ok = [lat for status, lat in done if status == 200]
    return {
        "offered_rps": round(rate, 2),
        "requests": n,
        "wall_s": round(wall, 2),
        "ok": len(ok),
        "share_429": round(statuses.count(429) / n, 3),
        "other": {str(s): statuses.count(s) for s in sorted(set(statuses)) if s not in (200, 429)},
        "goodput_rps": round(len(ok) / wall, 2),
        **_percentiles(ok),
    }


def _percentiles(latencies: list[float]) -> dict[str, float | None]:
    if len(latencies) < 2:
        return {"p50_ms": round(latencies[0] * 1000, 1) if latencies else None, "p95_ms": None}
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    return {"p50_ms": round(statistics.median(latencies) * 1000, 1), "p95_ms": round(q[18] * 1000, 1)}


def run(quick: bool = True, queue_size: int = 16) -> dict[str, Any]:
    """Start a server, measure, stop it; returns the report (numbers from this one run)."""
    import httpx

    closed_n, duration_s, cap = (24, 4.0, 160) if quick else (80, 10.0, 600)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    images = _images()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(port, queue_size, Path(tmp))
        try:
            startup_s = wait_ready(url, proc)
            asyncio.run(closed_loop(url, images, 2 * CONCURRENCY))  # warm connections and caches
            closed = asyncio.run(closed_loop(url, images, closed_n))
            rate = closed["rate_rps"]
            levels = {}
            for mult in (1, 4, 16):
                levels[f"{mult}x"] = asyncio.run(open_loop(url, images, rate * mult, duration_s, cap))
                time.sleep(1.0)  # let the queue drain between levels
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "benchmark": "serve",
        "quick": quick,
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        "config": {
            "drafter": "lite",
            "refiner": "none",
            "catalog": None,
            "queue_size": queue_size,
            "max_batch": 16,
            "batch_window_ms": 15,
            "image": "320px JPEG",
        },
        "startup_s": round(startup_s, 1),
        "closed_loop": closed,
        "open_loop": levels,
        "mean_batch_size": mean_batch_size(metrics),
    }


def mean_batch_size(metrics: str) -> float | None:
    """Mean pipeline batch size from the server's Prometheus text."""
    batch_count = batch_sum = 0.0
    for line in metrics.splitlines():
        if line.startswith("caption_agent_batch_size_count"):
            batch_count = float(line.split()[-1])
        elif line.startswith("caption_agent_batch_size_sum"):
            batch_sum = float(line.split()[-1])
    return round(batch_sum / batch_count, 2) if batch_count else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Shorter levels (4 s each) for CI.")
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--out", type=Path, help="Also write the JSON report here.")
    args = parser.parse_args()
    report = run(args.quick, args.queue_size)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
