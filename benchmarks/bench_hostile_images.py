"""Decoding cost of hostile JPEGs: time and peak RSS of one ``load_image`` with and without the marker check.

    .venv/bin/python benchmarks/bench_hostile_images.py [--quick] [--out results.json]

Each (case, mode) runs in a fresh process, so its peak RSS (``ru_maxrss``) is its own; the process first
imports Pillow and the package and builds the file, then reads its baseline VmRSS, so ``peak_growth_mb`` is what
the load itself added. Modes: ``unchecked`` is the loader with ``check_decode_cost`` switched off (what the
loader did before the check existed: Pillow parses the header, then decodes at a reduced DCT scale), ``checked``
is the loader as shipped. The cases (benchmarks/hostile_images.py):

- ``scans``: a 2048x2048 progressive JPEG whose last scan repeats ``--repeats`` times (44 KB at 500).
- ``exif``: a 64x64 JPEG with ``--exif-mb`` MB of EXIF in 64 KB APP1 segments.
- ``segments``: a 64x64 JPEG with ``--count`` one-byte comment segments (5 MB at a million).
- ``chunks``: a 64x64 PNG with ``--count`` empty private chunks (12 MB at a million).
- ``photo``: a real photo (examples/images/chelsea.jpg), to show the check costs nothing on ordinary input.

Exit status 1 when a checked hostile load is accepted, or is not at least 10x faster than the unchecked one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
HOSTILE = ("scans", "exif", "segments", "chunks")
sys.path.insert(0, str(REPO / "benchmarks"))


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _build(case: str, repeats: int, exif_mb: float, count: int) -> bytes:
    from hostile_images import chunk_flood_png, comment_flood_jpeg, exif_flood_jpeg, repeated_scan_jpeg

    if case == "scans":
        return repeated_scan_jpeg(side=2048, repeats=repeats)
    if case == "exif":
        return exif_flood_jpeg(mb=exif_mb)
    if case == "segments":
        return comment_flood_jpeg(count)
    if case == "chunks":
        return chunk_flood_png(count)
    return (REPO / "examples" / "images" / "chelsea.jpg").read_bytes()


def child(case: str, mode: str, repeats: int, exif_mb: float, count: int) -> dict[str, Any]:
    """One load in this (fresh) process; prints nothing, returns the measurement."""
    from caption_agent import images
    from caption_agent.errors import CaptionAgentError

    data = _build(case, repeats, exif_mb, count)
    if mode == "unchecked":
        images.check_decode_cost = lambda *args, **kw: None  # the loader as it was before the check
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    try:
        img, info = images.load_image(data)
        outcome = f"decoded {info.width}x{info.height}"
    except CaptionAgentError as exc:
        outcome = f"refused: {type(exc).__name__}"
    seconds = time.perf_counter() - t0
    return {
        "case": case,
        "mode": mode,
        "file_bytes": len(data),
        "seconds": round(seconds, 4),
        "peak_growth_mb": round((_rss_kb("VmHWM") - base) / 1024, 1),
        "outcome": outcome,
    }


def run(case: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", case, mode, "--repeats", str(args.repeats)]
    cmd += ["--exif-mb", str(args.exif_mb), "--count", str(args.count)]
    timeout_s = args.timeout
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired:
        return {"case": case, "mode": mode, "seconds": f">{timeout_s}", "outcome": "timed out"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=500, help="Copies of the repeated scan.")
    parser.add_argument("--exif-mb", type=float, default=39.0, help="MB of EXIF in the exif case.")
    parser.add_argument("--count", type=int, default=1_000_000, help="Segments / chunks in those cases.")
    parser.add_argument("--quick", action="store_true", help="Smaller files (200 scans, 8 MB EXIF, 200k segments).")
    parser.add_argument("--timeout", type=float, default=600.0, help="Longest one load may take, in seconds.")
    parser.add_argument("--out", type=Path, help="Write the report as JSON.")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.repeats, args.exif_mb, args.count)))
        return {}
    if args.quick:
        args.repeats, args.exif_mb, args.count = 200, 8.0, 200_000
    rows = [run(case, mode, args) for case in (*HOSTILE, "photo") for mode in ("unchecked", "checked")]
    report: dict[str, Any] = {"repeats": args.repeats, "exif_mb": args.exif_mb, "count": args.count, "rows": rows}
    failed = []
    for case in HOSTILE:
        before, after = (next(r for r in rows if (r["case"], r["mode"]) == (case, m)) for m in ("unchecked", "checked"))
        if not str(after["outcome"]).startswith("refused"):
            failed.append(f"{case}: accepted")
        elif isinstance(before["seconds"], float) and before["seconds"] < 10 * after["seconds"]:
            failed.append(f"{case}: only {before['seconds'] / max(after['seconds'], 1e-6):.1f}x faster")
        if isinstance(before["seconds"], float):
            report[f"{case}_speedup"] = round(before["seconds"] / max(after["seconds"], 1e-6), 1)
    report["failed"] = failed
    for r in rows:
        print(
            f"{r['case']:6s} {r['mode']:9s} {r.get('file_bytes', 0) / 1e6:8.3f} MB  {r['seconds']!s:>9} s  "
            f"peak +{r.get('peak_growth_mb', '?')} MB  {r['outcome']}"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
    return report


if __name__ == "__main__":
    sys.exit(1 if main().get("failed") else 0)
