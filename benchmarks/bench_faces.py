"""Face detectors compared on the labelled photos in tests/faces/labels.json: MTCNN (caption_agent.faces) and
NudeNet's FACE_FEMALE/FACE_MALE classes. Recall counts labelled faces at least 40 px high; false positives are
detections that match no labelled face; time is ms per image (median of repeats, after one warm-up).

    .venv/bin/python -P benchmarks/bench_faces.py [--threads N] [--repeats 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "faces" / "labels.json"
MIN_LABEL_PX = 40
Box = list[float]


def load_image(source: str, doc: dict[str, Any]) -> Image.Image:
    """A labelled image: a repo path, ``package:<pkg>/<path>`` inside an installed package, or an LFW grid."""
    if source.startswith("package:"):
        package, _, rel = source[len("package:") :].partition("/")
        spec = find_spec(package)
        assert spec and spec.submodule_search_locations, f"package {package} is not installed"
        return Image.open(Path(next(iter(spec.submodule_search_locations))) / rel).convert("RGB")
    if source.startswith("lfw_grid:"):
        import numpy as np
        from skimage.data import lfw_subset

        grid = doc["lfw_grid"]
        tile, gutter, cols = grid["tile"], grid["gutter"], grid["columns"]
        crops = lfw_subset()[:100] if source.endswith(":faces") else lfw_subset()[100:]
        side = gutter + cols * (tile + gutter)
        sheet = Image.new("L", (side, side), 128)
        for k, crop in enumerate(crops):
            r, c = divmod(k, cols)
            face = Image.fromarray((np.asarray(crop) * 255).astype("uint8")).resize((tile, tile), Image.BICUBIC)
            sheet.paste(face, (gutter + c * (tile + gutter), gutter + r * (tile + gutter)))
        return sheet.convert("RGB")
    return Image.open(ROOT / source).convert("RGB")


def load_set(path: Path = LABELS) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [dict(item, image=load_image(item["source"], doc)) for item in doc["images"]]


def matches(found: Box, label: Box) -> bool:
    """Each box's centre lies inside the other (robust to the looser or tighter box conventions of detectors)."""

    def inside(box: Box, other: Box) -> bool:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]

    return inside(found, label) and inside(label, found)


def score_image(found: list[Box], labels: list[Box]) -> tuple[int, int, int]:
    """(labelled faces >= 40 px, of those found, detections matching no labelled face of any size)."""
    big = [b for b in labels if b[3] - b[1] >= MIN_LABEL_PX]
    hit = sum(1 for b in big if any(matches(f, b) for f in found))
    false = sum(1 for f in found if not any(matches(f, b) for b in labels))
    return len(big), hit, false


def mtcnn(score: float, min_face_px: int) -> Callable[[Image.Image], list[Box]]:
    from caption_agent.faces import detector

    det = detector()
    return lambda image: [f.as_list()[:4] for f in det.detect(image, min_face_px=min_face_px, score=score)]


def nudenet(score: float) -> Callable[[Image.Image], list[Box]]:
    from caption_agent.policies.rules.image_safety import detect

    def run(image: Image.Image) -> list[Box]:
        out = []
        for d in detect(image):
            if d["class"] in ("FACE_FEMALE", "FACE_MALE") and d["score"] >= score:
                x, y, w, h = d["box"]
                out.append([x, y, x + w, y + h])
        return out

    return run


def evaluate(
    name: str, fn: Callable[[Image.Image], list[Box]], items: list[dict[str, Any]], repeats: int
) -> dict[str, Any]:
    rows = {}
    for item in items:
        fn(item["image"])  # warm-up (first call loads weights / allocates)
        times, found = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            found = fn(item["image"])
            times.append((time.perf_counter() - start) * 1000)
        faces, hit, false = score_image(found, item["boxes"])
        rows[item["name"]] = {
            "split": item["split"],
            "faces_40px": faces,
            "found": hit,
            "false_positives": false,
            "ms": round(statistics.median(times), 1),
        }
    summary = {}
    for split in ("tune", "holdout", "all"):
        part = [r for r in rows.values() if split in ("all", r["split"])]
        faces = sum(r["faces_40px"] for r in part)
        summary[split] = {
            "images": len(part),
            "faces_40px": faces,
            "recall": round(sum(r["found"] for r in part) / faces, 3) if faces else None,
            "fp_per_image": round(sum(r["false_positives"] for r in part) / len(part), 3),
            "fp_on_object_photos": sum(r["false_positives"] for r in part if r["faces_40px"] == 0),
            "ms_median": round(statistics.median(r["ms"] for r in part), 1),
            "ms_max": max(r["ms"] for r in part),
        }
    return {"detector": name, "summary": summary, "images": rows}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default).")
    parser.add_argument("--mtcnn-score", type=float, default=0.7)
    parser.add_argument("--min-face-px", type=int, default=30)
    parser.add_argument("--nudenet-score", type=float, default=0.35)
    parser.add_argument("--only", choices=["mtcnn", "nudenet"], default=None)
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    items = load_set()
    results = []
    if args.only in (None, "mtcnn"):
        results.append(
            evaluate(
                f"mtcnn score>={args.mtcnn_score} min_face_px={args.min_face_px}",
                mtcnn(args.mtcnn_score, args.min_face_px),
                items,
                args.repeats,
            )
        )
    if args.only in (None, "nudenet"):
        results.append(
            evaluate(f"nudenet faces score>={args.nudenet_score}", nudenet(args.nudenet_score), items, args.repeats)
        )
    result = {"threads": args.threads or "default", "results": results}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
