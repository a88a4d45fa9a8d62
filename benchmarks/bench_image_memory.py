"""Bounded work per image: peak RSS growth of one caption against 3x the decoded RGB size + 300 MB.

    .venv/bin/python benchmarks/bench_image_memory.py [--quick] [--refiner none|local] [--out results.json]

Peak RSS is a lifetime figure, so every image gets ONE fresh process. That process builds the agent, warms
every stage on a small bundled photo, reads its baseline VmRSS, resets the peak (``5`` into
/proc/self/clear_refs resets VmHWM on Linux), captions the image, and reads VmHWM: growth = VmHWM - baseline.
The budget is ``3 * w * h * 3 + 300 MB`` with w, h read from the header. A refused image (a CaptionAgentError,
e.g. an extreme aspect ratio) is within budget by definition, but is timed.

The children run under a memory cap so a regression cannot swap the machine: an address-space limit set
after the warm-up (an allocation over it fails; the failure is reported as over budget), and a watchdog here
that kills a child whose RSS passes the cap. The exit status is 1 when an image is over budget or has an
unexpected outcome (an ordinary image refused, an extreme strip accepted). The full set with the local refiner
(22 processes, each loading SmolLM2) takes about 15 min on 2 cores; ``--quick`` about 40 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
PHOTOS = sorted((REPO / "examples" / "images").glob("*.jpg"))
WARM_UP = REPO / "examples" / "images" / "chelsea.jpg"
MB = 10**6
BUDGET_FACTOR = 3
BUDGET_FIXED = 300 * MB
# Strings a capped allocation leaves behind when a stage catches the failure instead of dying.
ALLOCATION_FAILURES = (
    "MemoryError",
    "Unable to allocate",
    "Insufficient memory",
    "Cannot allocate",
    "bad_alloc",
    "Failed to allocate",
    "out of memory",
)


@dataclass(frozen=True)
class BenchImage:
    name: str
    path: str
    expect: str  # accept | refuse | either
    note: str = ""


# --- the image set ------------------------------------------------------------------------------------------------
def _gradient(w: int, h: int, noise: int = 0, seed: int = 0):
    """An RGB uint8 array: diagonal gradients plus uniform noise of amplitude ``noise`` (0 = none)."""
    import numpy as np

    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    rgb[..., 0] = (x * 0.7 + y * 0.3).astype(np.uint8)
    rgb[..., 1] = (x * 0.2 + y * 0.8).astype(np.uint8)
    rgb[..., 2] = ((x + y) * 0.5).astype(np.uint8)
    if noise:
        rng = np.random.default_rng(seed)
        rgb |= rng.integers(0, noise, size=rgb.shape, dtype=np.uint8)
    return rgb


def _strip(w: int, h: int):
    """A strip with some structure along its long side (bars), so it is not a trivially empty image."""
    import numpy as np

    rgb = _gradient(w, h)
    long_axis = 1 if w >= h else 0
    n = rgb.shape[long_axis]
    bars = (np.arange(n) // max(1, n // 40)) % 2 == 0
    if long_axis == 1:
        rgb[:, bars, 1] = 200
    else:
        rgb[bars, :, 1] = 200
    return rgb


def make_images(folder: Path, quick: bool = False) -> list[BenchImage]:
    """Write the test images into ``folder``; the quick set is a photo, a 20:1 strip, an extreme strip and the
    largest accepted pixel count."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out: list[BenchImage] = []

    def save(name: str, img: Image.Image, expect: str, note: str, **kw: Any) -> None:
        path = folder / name
        img.save(path, **kw)
        out.append(BenchImage(name, str(path), expect, note))

    def solid(w: int, h: int, colour=(90, 140, 200)) -> Image.Image:
        return Image.new("RGB", (w, h), colour)

    photos = PHOTOS[:1] if quick else PHOTOS
    out += [BenchImage(p.name, str(p), "accept", "bundled photo") for p in photos]
    save("strip_20000x1000.png", Image.fromarray(_strip(20000, 1000)), "accept", "20:1, at the aspect limit")
    save("strip_40000x8.png", solid(40000, 8), "refuse", "5000:1, a few KB")
    save("max_pixels_7071x7071.png", solid(7071, 7071), "accept", "~max_pixels, solid (150 MB decoded)")
    if quick:
        return out
    save("strip_1000x20000.png", Image.fromarray(_strip(1000, 20000)), "accept", "1:20, at the aspect limit")
    save("strip_60000x2.png", solid(60000, 2), "refuse", "30000:1, a few KB")
    save("strip_2x60000.png", solid(2, 60000), "refuse", "1:30000, a few KB")
    save("strip_60000x8.png", solid(60000, 8), "refuse", "7500:1, a few KB")
    save(
        "large_6000x4000.jpg",
        Image.fromarray(_gradient(6000, 4000, noise=32, seed=1)),
        "accept",
        "large JPEG",
        quality=90,
    )
    save(
        "noisy_5000x5000.png",
        Image.fromarray(_gradient(5000, 5000, noise=8, seed=2)),
        "accept",
        "gradient + noise, compresses poorly",
        compress_level=1,
    )
    save("solid_6000x6000.png", solid(6000, 6000), "accept", "solid, compresses to almost nothing")
    pal = Image.fromarray(_gradient(2400, 1600, noise=16, seed=3)).quantize(64)
    save("palette_2400x1600.png", pal, "accept", "palette (P) PNG")
    rgba = Image.fromarray(_gradient(2400, 1600, noise=16, seed=4)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((2400, 1600)))
    save("rgba_2400x1600.png", rgba, "accept", "RGBA PNG")
    gray16 = (np.linspace(0, 65535, 2400, dtype=np.float64)[None, :] * np.ones((1600, 1))).astype(np.uint16)
    save("gray16_2400x1600.png", Image.fromarray(gray16), "accept", "16-bit grayscale PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise on display
    save(
        "exif_rotated_4000x3000.jpg",
        Image.fromarray(_gradient(4000, 3000, noise=16, seed=5)),
        "accept",
        "EXIF orientation 6",
        quality=90,
        exif=exif,
    )
    return out


# --- one image in one process -------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _child(image: str, refiner: str, cap_gb: float, out: Path) -> int:
    """Runs in the fresh process: warm up, reset the peak, caption ``image`` once, write the figures."""
    sys.path.insert(0, str(REPO))
    from caption_agent import AgentConfig, CaptionAgent, CaptionAgentError

    agent = CaptionAgent(AgentConfig.load(refiner={"backend": refiner}))
    t0 = time.perf_counter()
    agent.caption(WARM_UP)
    warm_s = time.perf_counter() - t0
    # The cap is on address space, above what the warmed-up process already maps: an allocation that would
    # swap the machine fails instead. Thread stacks and allocator arenas fit easily in the headroom.
    vm_size_kb = _status_kb("VmSize") or 0
    if cap_gb > 0:
        limit = vm_size_kb * 1024 + int(cap_gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    baseline_kb = _status_kb("VmRSS") or 0
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        peak_method = "VmHWM after clear_refs reset"
    except OSError as exc:
        peak_method = f"lifetime ru_maxrss (clear_refs failed: {exc}); growth counts only above the warm-up peak"
    record: dict[str, Any] = {"baseline_rss_kb": baseline_kb, "peak_method": peak_method, "warm_up_s": round(warm_s, 2)}
    t0 = time.perf_counter()
    try:
        result = agent.caption(image)
        record["status"] = result.status
        record["result_text"] = result.model_dump_json()
    except CaptionAgentError as exc:
        record["status"] = f"refused: {type(exc).__name__}: {exc}"
    except MemoryError as exc:
        record["status"] = f"crashed: MemoryError: {exc}"
    record["caption_s"] = round(time.perf_counter() - t0, 3)
    if peak_method.startswith("VmHWM"):
        peak_kb = _status_kb("VmHWM") or 0
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    record["peak_rss_kb"] = peak_kb
    out.write_text(json.dumps(record), encoding="utf-8")
    return 0


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def measure(image: BenchImage, refiner: str = "none", cap_gb: float = 6.0, timeout_s: float = 300.0) -> dict[str, Any]:
    """Caption ``image`` in a fresh process and compare its peak RSS growth with the budget; never raises."""
    from PIL import Image

    with Image.open(image.path) as im:  # header only: no pixels decoded
        width, height = im.size
    budget = BUDGET_FACTOR * width * height * 3 + BUDGET_FIXED
    row: dict[str, Any] = {
        **asdict(image),
        "width": width,
        "height": height,
        "file_bytes": os.path.getsize(image.path),
        "budget_mb": round(budget / MB, 1),
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    with tempfile.TemporaryDirectory(prefix="bench-imgmem-") as tmp:
        out = Path(tmp) / "child.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            image.path,
            "--refiner",
            refiner,
            "--cap-gb",
            str(cap_gb),
            "--child-out",
            str(out),
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = None
        max_rss_kb = 0
        # Watchdog: the address-space cap is the first line; this one catches what it cannot (e.g. no rlimit).
        hard_kb = int((cap_gb + 3) * 1024**2) if cap_gb > 0 else None
        while proc.poll() is None:
            rss = _rss_kb(proc.pid)
            max_rss_kb = max(max_rss_kb, rss)
            elapsed = time.perf_counter() - t0
            if hard_kb is not None and rss > hard_kb:
                killed = f"killed: RSS {rss // 1024} MiB over the {cap_gb + 3:g} GiB watchdog"
            elif elapsed > timeout_s:
                killed = f"killed: still running after {timeout_s:g} s"
            if killed:
                proc.kill()
                break
            time.sleep(0.02)
        stdout, stderr = proc.communicate()
        row["process_s"] = round(time.perf_counter() - t0, 2)
        child = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None
    if child is None:
        tail = " | ".join((stderr or stdout or "").strip().splitlines()[-3:])[-400:]
        row.update(
            status=killed or f"crashed: exit {proc.returncode}: {tail}",
            accepted=None,
            growth_mb=round(max_rss_kb * 1024 / MB, 1),
            within_budget=False,
            caption_s=None,
        )
        row["note"] = (row["note"] + "; growth shown is the whole process RSS").strip("; ")
    else:
        growth = max(0, child["peak_rss_kb"] - child["baseline_rss_kb"]) * 1024
        text = child.pop("result_text", "") or ""
        status = child["status"]
        failed_alloc = next((s for s in ALLOCATION_FAILURES if s in text or s in status), None)
        accepted = not status.startswith(("refused", "crashed"))
        row.update(child, accepted=accepted, growth_mb=round(growth / MB, 1))
        row["within_budget"] = growth <= budget and failed_alloc is None and not status.startswith("crashed")
        if failed_alloc:
            row["status"] = f"{status} (an allocation failed under the {cap_gb:g} GiB cap: {failed_alloc!r})"
    row["ratio"] = round(row["growth_mb"] / row["budget_mb"], 3)
    expected = image.expect == "either" or (
        row["accepted"] is not None and row["accepted"] == (image.expect == "accept")
    )
    row["as_expected"] = expected
    row["passed"] = bool(row["within_budget"] and expected)
    return row


# --- report -------------------------------------------------------------------------------------------------------
def run(quick: bool, refiner: str | None = None, cap_gb: float = 6.0, folder: Path | None = None) -> dict[str, Any]:
    """Measure every image of the (quick) set, one process each."""
    refiner = refiner or ("none" if quick else "local")
    with tempfile.TemporaryDirectory(prefix="bench-imgmem-set-") as tmp:
        target = folder or Path(tmp)
        images = make_images(target, quick)
        rows = []
        for image in images:
            print(f"  {image.name} ...", file=sys.stderr, flush=True)
            rows.append(measure(image, refiner, cap_gb, timeout_s=120 if refiner == "none" else 300))
    accepted = [r for r in rows if r["accepted"]]
    worst = max(accepted, key=lambda r: r["ratio"], default=None)
    return {
        "quick": quick,
        "refiner": refiner,
        "cap_gb": cap_gb,
        "rule": f"peak RSS growth <= {BUDGET_FACTOR} * w*h*3 + {BUDGET_FIXED // MB} MB",
        "images": rows,
        "accepted": len(accepted),
        "refused": sum(1 for r in rows if r["accepted"] is False),
        "worst_ratio": worst["ratio"] if worst else None,
        "worst_image": worst["name"] if worst else None,
        "all_passed": all(r["passed"] for r in rows),
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"refiner {report['refiner']}; rule: {report['rule']}",
        "",
        "| image | w x h | file KB | expect | status | caption s | process s | growth MB | budget MB | ratio | pass |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["images"]:
        status = r["status"] if len(r["status"]) < 140 else r["status"][:137] + "..."
        lines.append(
            f"| {r['name']} | {r['width']}x{r['height']} | {r['file_bytes'] / 1024:.0f} | {r['expect']} | "
            f"{status.replace('|', '/')} | {r['caption_s']} | {r['process_s']} | {r['growth_mb']} | "
            f"{r['budget_mb']} | {r['ratio']} | {'yes' if r['passed'] else 'NO'} |"
        )
    lines.append("")
    methods = sorted({r["peak_method"] for r in report["images"] if "peak_method" in r})
    lines.append(f"peak measured as: {'; '.join(methods) or 'n/a'}")
    lines.append(
        f"worst accepted ratio: {report['worst_ratio']} ({report['worst_image']}); all passed: {report['all_passed']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 images, refiner none (about 1 min on 2 cores).")
    parser.add_argument(
        "--refiner",
        choices=["none", "local"],
        default=None,
        help="Refiner backend in each process (default: none with --quick, else local).",
    )
    parser.add_argument(
        "--cap-gb",
        type=float,
        default=6.0,
        help="Address-space headroom of each process after warm-up, in GiB (0 = no cap).",
    )
    parser.add_argument("--keep-images", type=Path, default=None, help="Write the test images here and keep them.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.exit(_child(args.child, args.refiner or "none", args.cap_gb, args.child_out))
    report = run(args.quick, args.refiner, args.cap_gb, args.keep_images)
    print(render(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["all_passed"] else 1)
