"""Face detectors compared on the labelled photos in tests/faces/labels.json: MTCNN (caption_agent.faces) and
NudeNet's FACE_FEMALE/FACE_MALE classes. Recall counts labelled faces at least 40 px high; false positives are
detections that match no labelled face; time is ms per image (median of repeats, after one warm-up).

    .venv/bin/python -P benchmarks/bench_faces.py [--threads N] [--repeats 3] [--out results.json]

``--people`` measures what the image screen states instead (issue 24 point 3): on person-free real photos (the
trust set's, benchmarks/trustset/faces.json's and tests/faces' person-free images, one count per photo) the share
that get a person, and the recall of labelled faces of 40 px or more, each with a 95 % Wilson interval, for MTCNN
alone and MTCNN with the second check (caption_agent.faces_check).
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
    """A labelled image: a repo path, ``package:<pkg>/<path>`` inside an installed package, an LFW grid,
    ``deb:<package>/<path>`` inside a Debian package or ``trust:<id>`` (both via benchmarks/trustset/prepare.py)."""
    if source.startswith(("deb:", "trust:")):
        return _trust_image(source)
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
    parser.add_argument("--people", action="store_true", help="Person-free photos and recall, with the check.")
    args = parser.parse_args(argv)
    if args.people:
        out = {"results": [measure_people(False), measure_people(True)]}
        print(json.dumps(out, indent=2))
        if args.out:
            args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        return out
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


# --- what the screen states: person-free photos and labelled faces (issue 24 point 3) ---------------------------
TRUST = ROOT / "benchmarks" / "trustset"


def _prepare_module() -> Any:
    sys.path.insert(0, str(TRUST))
    import prepare

    return prepare


def _trust_image(source: str) -> Image.Image:
    prepare = _prepare_module()
    kind, _, rest = source.partition(":")
    if kind == "trust":
        photo = next(p for p in prepare.load_manifest() if p["id"] == rest)
        return Image.open(prepare.prepare([photo])[rest]).convert("RGB")
    package, _, rel = rest.partition("/")
    return Image.open(prepare.unpack(package, prepare.DEFAULT_CACHE) / rel).convert("RGB")


def people_sets() -> tuple[list[tuple[str, Image.Image]], list[dict[str, Any]]]:
    """(person-free photos as (name, image), labelled face images as {name, image, boxes, source})."""
    prepare = _prepare_module()
    photos = prepare.load_manifest()
    paths = prepare.prepare(photos)
    free = [(p["id"], Image.open(paths[p["id"]]).convert("RGB")) for p in photos if p["people"] == 0]
    extra = json.loads((TRUST / "faces.json").read_text(encoding="utf-8"))
    free += [(e["source"], load_image(e["source"], {})) for e in extra["person_free"]]
    labelled = load_set()
    free += [(i["name"], i["image"]) for i in labelled if not i["boxes"]]
    faces = [i for i in labelled if i["boxes"]]
    faces += [dict(e, name=e["source"], image=load_image(e["source"], {})) for e in extra["faces"]]
    return free, faces


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of k successes in n trials."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def screen_faces(image: Image.Image, checked: bool) -> list[Box]:
    """Face boxes the image screen would state: MTCNN at the screen's defaults, then the second check."""
    from caption_agent import faces_check
    from caption_agent.faces import detector
    from caption_agent.policies.rules.image_safety import detect

    det = detector()
    boxes = [f.as_list() for f in det.detect(image, min_face_px=30, score=0.7)]
    if checked:
        boxes = [v.box for v in faces_check.confirm(image, boxes, det, detect(image)) if v.kept]
    return [b[:4] for b in boxes]


def measure_people(checked: bool) -> dict[str, Any]:
    free, faces = people_sets()
    fired = [name for name, image in free if screen_faces(image, checked)]
    big = hit = false = 0
    for item in faces:
        n, h, f = score_image(screen_faces(item["image"], checked), item["boxes"])
        big, hit, false = big + n, hit + h, false + f
    return {
        "detector": "mtcnn + second check" if checked else "mtcnn alone",
        "person_free_photos": len(free),
        "person_free_with_a_person": len(fired),
        "false_person_rate": round(len(fired) / len(free), 4),
        "false_person_rate_ci95": wilson(len(fired), len(free)),
        "fired_on": fired,
        "face_images": len(faces),
        "faces_40px": big,
        "found": hit,
        "recall": round(hit / big, 4) if big else None,
        "recall_ci95": wilson(hit, big),
        "unmatched_detections_on_face_images": false,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
