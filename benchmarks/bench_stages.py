"""Two small ratio benchmarks: lite drafter images/s (batch 1 vs one batch), and the batch job's result cache
(a re-run served from the cache vs the first run that fills it), same run, same items.

    .venv/bin/python benchmarks/bench_stages.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
IMAGES = sorted((REPO / "examples" / "images").glob("*.jpg"))


def lite_drafter(repeats: int) -> dict[str, Any]:
    """images/s of LiteDrafter.draft over the bundled photos: one call per image, and one call for all."""
    from caption_agent.config import ImageLimits
    from caption_agent.drafters.lite import LiteDrafter
    from caption_agent.images import load_image

    drafter = LiteDrafter()
    loaded = [load_image(p, ImageLimits()) for p in IMAGES]
    images, infos = [im for im, _ in loaded], [info for _, info in loaded]
    drafter.draft(images[:1], infos[:1], 3)  # warm-up
    best = {"batch_1": float("inf"), f"batch_{len(images)}": float("inf")}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for im, info in zip(images, infos):
            drafter.draft([im], [info], 3)
        best["batch_1"] = min(best["batch_1"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        drafter.draft(images, infos, 3)
        best[f"batch_{len(images)}"] = min(best[f"batch_{len(images)}"], time.perf_counter() - t0)
    per_s = {k: round(len(images) / v, 2) for k, v in best.items()}
    return {
        "images": len(images),
        "candidates": 3,
        "repeats": repeats,
        "images_per_s": per_s,
        "batch_vs_single": round(per_s[f"batch_{len(images)}"] / per_s["batch_1"], 3),
    }


def cache(items: int) -> dict[str, Any]:
    """A caption job (lite drafter, refiner none) into a fresh output twice over one cache folder."""
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.jobs import CaptionJobOptions, run_caption_job

    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        folder = Path(tmp)
        manifest = folder / "manifest.jsonl"
        # distinct requests (max_chars) for the same photos: every item is its own cache entry
        manifest.write_text(
            "".join(
                json.dumps({"image": str(IMAGES[i % len(IMAGES)]), "max_chars": 60 + i}) + "\n" for i in range(items)
            )
        )
        agent = CaptionAgent(AgentConfig.load(refiner={"backend": "none"}))
        try:
            run_caption_job(
                manifest, CaptionJobOptions(out=folder / "warm.jsonl", progress=False, limit=2), agent=agent
            )  # load models outside the clock
            seconds = {}
            for name in ("miss", "hit"):
                t0 = time.perf_counter()
                summary = run_caption_job(
                    manifest,
                    CaptionJobOptions(out=folder / f"{name}.jsonl", progress=False, cache_dir=folder / "cache"),
                    agent=agent,
                )
                seconds[name] = time.perf_counter() - t0
                assert summary.written == items, summary
            assert summary.cached == items, summary  # the second run was served from the cache
        finally:
            agent.close()
    return {
        "items": items,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "items_per_s": {k: round(items / v, 2) for k, v in seconds.items()},
        "hit_vs_miss": round(seconds["miss"] / seconds["hit"], 2),
    }


def run(quick: bool) -> dict[str, Any]:
    return {"lite_drafter": lite_drafter(1 if quick else 3), "cache": cache(16 if quick else 64)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="One repeat, 16 cache items.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    result = run(args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
