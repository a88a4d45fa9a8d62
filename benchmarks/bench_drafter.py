"""Lite drafter forward batch by measurement: images/s of the raw EfficientNet-Lite0 forward pass and of the whole
drafter, per batch size, on this machine's CPU (the lite drafter always runs on CPU).

    python benchmarks/bench_drafter.py [--quick] [--images 32] [--batches 1,2,4,8,16,32] [--rounds 3] [--out r.json]

Rounds alternate the order of the batch sizes so drift in machine load spreads over all of them; each figure is
the best round. ``best_batch`` is the batch with the highest drafter images/s, and ``drafter_vs_raw`` the drafter's
images/s at that batch over the raw forward pass's at its own best batch (both on the drafter's runtime,
``--runtime``: onnx by default, or torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]


def run(n_images: int, batches: list[int], rounds: int, runtime: str = "onnx") -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from caption_agent.config import LiteDrafterSettings
    from caption_agent.drafters.lite import LiteDrafter
    from caption_agent.images import load_image

    photos = sorted((ROOT / "examples" / "images").glob("*.jpg"))
    loaded = [load_image(p)[0] for p in photos]
    images: list[Image.Image] = [loaded[i % len(loaded)] for i in range(n_images)]
    drafter = LiteDrafter(LiteDrafterSettings(batch_size=1, runtime=runtime))
    model = drafter._model  # the classifier itself: (N, 3, 224, 224) float32 -> probabilities
    tensors = np.stack([drafter._preprocess(im) for im in images])
    raw = {b: float("inf") for b in batches}
    full = {b: float("inf") for b in batches}
    cpu = {b: float("inf") for b in batches}  # process CPU s of the drafter: less sensitive to other processes
    model(tensors[:1])  # warm-up
    for r in range(rounds):
        for b in batches if r % 2 == 0 else list(reversed(batches)):
            t0 = time.perf_counter()
            for lo in range(0, n_images, b):
                model(tensors[lo : lo + b])
            raw[b] = min(raw[b], time.perf_counter() - t0)
            drafter.settings = LiteDrafterSettings(batch_size=b, runtime=runtime)
            t0, c0 = time.perf_counter(), time.process_time()
            drafter.probabilities(images)
            full[b] = min(full[b], time.perf_counter() - t0)
            cpu[b] = min(cpu[b], time.process_time() - c0)
    raw_ips = {str(b): round(n_images / s, 1) for b, s in raw.items()}
    full_ips = {str(b): round(n_images / s, 1) for b, s in full.items()}
    best = max(batches, key=lambda b: n_images / full[b])
    best_raw = max(batches, key=lambda b: n_images / raw[b])
    return {
        "images": n_images,
        "runtime": runtime,
        "cpu_count": os.cpu_count(),
        "raw_forward_images_per_s": raw_ips,
        "drafter_images_per_s": full_ips,
        "drafter_cpu_ms_per_image": {str(b): round(1000 * s / n_images, 1) for b, s in cpu.items()},
        "best_batch": best,
        "best_raw_batch": best_raw,
        "configured_default": LiteDrafterSettings().batch_size,
        "drafter_vs_raw": round((n_images / full[best]) / (n_images / raw[best_raw]), 3),
        "best_vs_batch_16": round(full.get(16, full[best]) / full[best], 3) if 16 in full else None,
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 images, 2 rounds.")
    parser.add_argument("--images", type=int, default=None, help="Images per measurement (32; 16 quick).")
    parser.add_argument("--batches", default="1,2,4,8,16,32", help="Comma-separated batch sizes.")
    parser.add_argument("--rounds", type=int, default=None, help="Rounds (3; 2 quick).")
    parser.add_argument("--runtime", choices=["onnx", "torch"], default="onnx", help="The classifier's runtime.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    n = args.images or (16 if args.quick else 32)
    batches = [int(b) for b in args.batches.split(",") if int(b) <= n]
    res = run(n, batches, args.rounds or (2 if args.quick else 3), args.runtime)
    print(json.dumps(res, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
