"""Batch job throughput, measured in one run on the same items.

1. Real backends (lite drafter; refiner none by default, or local/vllm): items/s of ``run_caption_job`` vs
   ``CaptionAgent.caption`` called in a loop, and vs ``caption_batch`` without the job around it.
2. Zero-cost backends (a drafter and a refiner that do no work, registered through the registries like any
   plugin; NudeNet image screening off): pure pipeline captions/s, and the job's own overhead per item
   (manifest hashing, dedupe, JSON encoding, fsync'd writes).

    .venv/bin/python benchmarks/bench_batch.py --quick --out bench_batch.json
    .venv/bin/python benchmarks/bench_batch.py --refiner vllm --base-url http://127.0.0.1:18080/v1 --model NAME
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from caption_agent.drafters import DRAFTERS  # noqa: E402
from caption_agent.drafters.base import Drafter  # noqa: E402
from caption_agent.refiners import REFINERS  # noqa: E402
from caption_agent.refiners.base import RefineJob, Refiner  # noqa: E402
from caption_agent.schemas import Candidate, Draft, ImageInfo  # noqa: E402

LOCALES = ["en-US", "en-GB", "en-AU", "en-CA", "en-IE", "en-NZ", "en-IN", "en-ZA"]


class ZeroDrafter(Drafter):
    """A drafter that does no work: one draft from the image's size. Benchmark harness, not a backend."""

    name = "bench-zero"
    model_id = "zero"

    def __init__(self, settings: Any = None) -> None:
        pass

    def draft(self, images: Sequence[Any], infos: Sequence[ImageInfo], n: int, style: str | None = None) -> list[Draft]:
        return [
            Draft(
                image=info,
                model_id="zero",
                candidates=[
                    Candidate(
                        text=f"A photograph of {info.width} by {info.height} pixels.", drafter=self.name, score=1.0
                    )
                ],
            )
            for info in infos
        ]


class ZeroRefiner(Refiner):
    """A refiner that answers at once with the draft as JSON (prompt rendering and parsing still run)."""

    name = "bench-zero"
    model_id = "zero"

    def __init__(self, settings: Any = None) -> None:
        pass

    def complete(self, messages: list[dict[str, str]], job: RefineJob) -> str:
        return json.dumps({"caption": job.draft, "facts_used": []})


def _manifest(folder: Path, n: int) -> tuple[Path, list[dict[str, Any]]]:
    images = sorted((REPO / "examples" / "images").glob("*.jpg"))
    rows = []
    for i in range(n):  # distinct requests: every (image, locale, budget) is its own item
        rows.append(
            {
                "image": str(images[i % len(images)]),
                "locale": LOCALES[(i // len(images)) % len(LOCALES)],
                "max_chars": 100 + i // (len(images) * len(LOCALES)),
            }
        )
    path = folder / f"manifest-{n}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def _measure(
    agent: Any, manifest: Path, rows: list[dict[str, Any]], out: Path, batch_size: int, workers: int, repeats: int
) -> dict[str, Any]:
    from caption_agent.jobs import CaptionJobOptions, run_caption_job

    requests = [agent.make_request(r["image"], locale=r["locale"], max_chars=r["max_chars"]) for r in rows]
    agent.caption_batch(requests[:2])  # load every model before timing
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}  # process CPU seconds (all threads): steadier than wall time on a shared machine

    def timed(name: str, call: Any) -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        call()
        wall, used = time.perf_counter() - w0, time.process_time() - c0
        best[name] = min(best.get(name, wall), wall)
        cpu[name] = min(cpu.get(name, used), used)

    def loop() -> None:
        for r in rows:
            agent.caption(r["image"], locale=r["locale"], max_chars=r["max_chars"])

    def pipeline() -> None:
        for start in range(0, len(requests), batch_size):
            agent.caption_batch(requests[start : start + batch_size])

    for rep in range(repeats):

        def job(rep: int = rep) -> None:
            summary = run_caption_job(
                manifest,
                CaptionJobOptions(
                    out=out.with_name(f"{out.stem}-{rep}.jsonl"), batch_size=batch_size, workers=workers, progress=False
                ),
                agent=agent,
            )
            assert summary.written == len(rows), summary

        timed("loop", loop)
        timed("pipeline", pipeline)
        timed("job", job)
    n = len(rows)
    return {
        "items": n,
        "repeats": repeats,
        "batch_size": batch_size,
        "workers": workers,
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "items_per_s": {k: round(n / v, 2) for k, v in best.items()},
        "items_per_cpu_s": {k: round(n / v, 2) for k, v in cpu.items()},
        "job_vs_loop": round(best["loop"] / best["job"], 3),
        "job_vs_pipeline": round(best["pipeline"] / best["job"], 3),
        "job_overhead_ms_per_item": round((best["job"] - best["pipeline"]) * 1000 / n, 3),
        "job_overhead_cpu_ms_per_item": round((cpu["job"] - cpu["pipeline"]) * 1000 / n, 3),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Few items, one repeat (a smoke run).")
    parser.add_argument("--items", type=int, default=None, help="Items for the real-backend run (default 64).")
    parser.add_argument("--zero-items", type=int, default=None, help="Items for the zero-cost run (default 512).")
    parser.add_argument("--repeats", type=int, default=None, help="Best of N (default 2; 1 with --quick).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--refiner", default="none", help="none | local | vllm (real-backend run).")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    items = args.items or (16 if args.quick else 64)
    zero_items = args.zero_items or (128 if args.quick else 512)
    repeats = args.repeats or (1 if args.quick else 2)

    from caption_agent import AgentConfig, CaptionAgent

    DRAFTERS.register("bench-zero", f"{__name__}:ZeroDrafter")
    REFINERS.register("bench-zero", f"{__name__}:ZeroRefiner")
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        policy = folder / "policy.yaml"  # NudeNet screening is a model too: off for the zero-cost run
        policy.write_text("extends: default\nversion: bench\nrules:\n  image_safety:\n    enabled: false\n")
        zero = CaptionAgent(
            AgentConfig.load(
                drafter={"backend": "bench-zero", "n_candidates": 1},
                refiner={"backend": "bench-zero"},
                policy={"file": str(policy)},
            )
        )
        manifest, rows = _manifest(folder, zero_items)
        report["zero_cost"] = _measure(zero, manifest, rows, folder / "zero", args.batch_size, args.workers, repeats)
        zero.close()
        if not args.skip_real:
            section: dict[str, Any] = {"temperature": 0}
            if args.base_url:
                section.update(base_url=args.base_url, model=args.model)
            refiner: dict[str, Any] = {"backend": args.refiner}
            if args.refiner != "none":  # "none" has no settings section
                refiner[args.refiner] = section
            real = CaptionAgent(AgentConfig.load(refiner=refiner))
            manifest, rows = _manifest(folder, items)
            report["real"] = _measure(real, manifest, rows, folder / "real", args.batch_size, args.workers, repeats)
            report["real"]["backends"] = {"drafter": "lite", "refiner": args.refiner}
            real.close()
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
