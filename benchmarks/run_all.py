"""Run every benchmark and print one table of ratios (each measured within one run), plus the machine.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only batch,stages] [--vllm-url URL] [--out all.json]

Each benchmark runs in its own process (clean registries, memory and timings); one that fails or is skipped is
reported with its reason and the others still run. To add a benchmark, append a ``Bench`` to ``BENCHES``: a
function ``(quick, options) -> dict`` that runs it, and one ``dict -> [(ratio name, value, meaning)]``.
A ``benchmarks/bench_serve.py`` exposing ``run(quick: bool) -> dict`` is picked up automatically.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
Row = tuple[str, Any, str]


def _script(module: str, argv: list[str]) -> dict[str, Any]:
    """Run ``benchmarks/<module>.py``'s ``main(argv + --out FILE)`` and return the JSON it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        importlib.import_module(module).main([*argv, "--out", str(out)])
        return json.loads(out.read_text(encoding="utf-8"))


def _batch_rows(r: dict[str, Any]) -> list[Row]:
    real, zero = r["real"], r["zero_cost"]
    real_s = real["seconds"]["pipeline"] / real["items"]
    zero_s = zero["seconds"]["pipeline"] / zero["items"]
    return [
        ("batch job vs loop of caption()", real["job_vs_loop"], "items/s ratio, lite drafter, refiner none"),
        ("batch job vs bare caption_batch", real["job_vs_pipeline"], "items/s ratio (job bookkeeping cost)"),
        (
            "pipeline overhead / item time",
            round(zero_s / real_s, 4),
            f"zero-cost backends {zero_s * 1000:.2f} ms vs real {real_s * 1000:.1f} ms per item",
        ),
    ]


def _ingest_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            "ingestion vs raw embedder",
            r["ratio"],
            f"{r['ingest_products_per_s']} products/s vs {r['raw_texts_per_s']} texts/s encode ({r['n']} products)",
        )
    ]


def _query_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for s in r["sizes"]:
        size = s["products"]
        rows.append(
            (
                f"facts() vs embed-only p50 @{size}",
                round(s["facts_end_to_end"]["p50_ms"] / s["embed_query_only"]["p50_ms"], 3),
                f"{s['facts_end_to_end']['p50_ms']} ms vs {s['embed_query_only']['p50_ms']} ms",
            )
        )
        rows.append(
            (
                f"store query p50 ms @{size}",
                s["store_vector_only"]["p50_ms"],
                f"precomputed query vector, p95 {s['store_vector_only'].get('p95_ms')} ms",
            )
        )
        rows.append(
            (
                f"brand filter vs no filter p50 @{size}",
                round(s["store_brand_filter"]["p50_ms"] / s["store_vector_only"]["p50_ms"], 3),
                f"{s['store_brand_filter']['p50_ms']} ms vs {s['store_vector_only']['p50_ms']} ms",
            )
        )
    return rows


def _embed_rows(r: dict[str, Any]) -> list[Row]:
    per_s, cos, agree = r["ingest_products_per_s"], r["cosine_to_torch"], r["retrieval_agreement"]
    raw = r["raw_texts_per_s"]
    return [
        (
            "ingestion onnx vs torch embedder",
            r["ingest_onnx_vs_torch"],
            f"{per_s['onnx']} vs {per_s['torch']} products/s, {r['threads']} threads both, {r['n']} products; "
            f"identical top-10 {r['store_top10_identical_share']:.0%}, cosine min {cos['onnx']['min']}",
        ),
        (
            "encode onnx int8 vs torch",
            r["raw_int8_vs_torch"],
            f"{raw['onnx_int8']} vs {raw['torch']} texts/s; cosine mean {cos['onnx_int8']['mean']}, "
            f"top-1 same {agree['onnx_int8']['top1_same']}, top-10 overlap {agree['onnx_int8']['top10_overlap']}",
        ),
    ]


def _coldstart_rows(r: dict[str, Any]) -> list[Row]:
    marks = r["breakdown"]["marks_s"]
    slow = sorted(((k, v) for k, v in marks.items() if k.startswith(("import", "load"))), key=lambda kv: -kv[1])[:3]
    return [
        (
            "cold start CLI vs import torch",
            r["cli_vs_import_torch"],
            f"{r['cli_p50_s']} s vs {r['import_torch_p50_s']} s p50 (warm caches, target <= {r['target_s']} s); "
            + ", ".join(f"{k} {v} s" for k, v in slow),
        )
    ]


def _default_path_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    cold, batch, serve = r.get("cold", {}).get("this"), r.get("batch", {}).get("this"), r.get("serve", {}).get("this")
    if cold:
        torch_ = "torch" in cold["breakdown"].get("modules", []) if isinstance(cold["breakdown"], dict) else None
        cpu = cold.get("cli_cpu_p50_s")
        rows.append(
            (
                "cold caption one.jpg p50 s",
                cold["cli_p50_s"],
                f"new process, cache built; CPU {cpu} s (user + system); torch imported: {torch_}",
            )
        )
    if batch:
        stages = ", ".join(f"{k} {v['per_s']}/s" for k, v in batch["stages"].items())
        rows.append(
            (
                "batch of distinct photos vs sum of stages",
                batch["pipeline_vs_limit"],
                f"{batch['pipeline_images_per_s']} vs {batch['sum_of_stages_limit_per_s']} images/s "
                f"({batch['items']} photos; {stages})",
            )
        )
    if serve:
        rows.append(
            (
                f"serve p50 ms, {serve['concurrency']} clients",
                serve["p50_ms"],
                f"p95 {serve['p95_ms']} ms, {serve['rate_rps']} captions/s, mean batch {serve['mean_batch_size']}",
            )
        )
    return rows


def _drafter_rows(r: dict[str, Any]) -> list[Row]:
    best = str(r["best_batch"])
    return [
        (
            "lite drafter vs raw forward pass",
            r["drafter_vs_raw"],
            f"{r['drafter_images_per_s'][best]} vs {r['raw_forward_images_per_s'][str(r['best_raw_batch'])]} images/s "
            f"(best batch {best}, default {r['configured_default']}, {r['runtime']})",
        )
    ]


def _stages_rows(r: dict[str, Any]) -> list[Row]:
    lite, cache = r["lite_drafter"], r["cache"]
    return [
        (
            "lite drafter images/s (batch 1)",
            lite["images_per_s"]["batch_1"],
            f"{lite['candidates']} drafts per image, {lite['images']} bundled photos",
        ),
        ("lite drafter one batch vs batch 1", lite["batch_vs_single"], "images/s ratio"),
        ("cache hit vs miss", cache["hit_vs_miss"], f"job wall time ratio, {cache['items']} items"),
    ]


def _refiner_rows(r: dict[str, Any]) -> list[Row]:
    ratios = r["vllm_ratio_to_c1"]
    top = max(ratios, key=int)
    return [(f"vLLM concurrency {top} vs sequential", ratios[top], f"captions/s ratio, {r['model']}")]


def _serve_rows(r: dict[str, Any]) -> list[Row]:
    levels = r.get("open_loop") or {}
    rows: list[Row] = []
    if "1x" in levels and "16x" in levels and levels["1x"].get("goodput_rps"):
        rows.append(
            (
                "serve goodput 16x overload vs 1x",
                round(levels["16x"]["goodput_rps"] / levels["1x"]["goodput_rps"], 3),
                f"429 share at 16x {levels['16x'].get('share_429')}",
            )
        )
    if r.get("mean_batch_size") is not None:
        rows.append(("serve mean micro-batch size", r["mean_batch_size"], "requests per pipeline batch"))
    return rows + [
        (f"serve: {k}", v, "") for k, v in r.items() if isinstance(v, (int, float)) and ("ratio" in k or "_vs_" in k)
    ]


def _image_memory_rows(r: dict[str, Any]) -> list[Row]:
    over = [i["name"] for i in r["images"] if not i["passed"]]
    if r["worst_ratio"] is None:
        raise ValueError(f"no image was accepted; failed: {over}")
    return [
        (
            "image memory: worst peak growth / budget",
            r["worst_ratio"],
            f"budget 3*w*h*3 + 300 MB, {r['accepted']} accepted, {r['refused']} refused, worst "
            f"{r['worst_image']}; failed: {', '.join(over) or 'none'}",
        )
    ]


def _hostile_rows(r: dict[str, Any]) -> list[Row]:
    time_of = {(x["case"], x["mode"]): x for x in r["rows"]}
    return [
        (
            f"hostile JPEG ({case}): unchecked / checked load time",
            r.get(f"{case}_speedup"),
            f"{time_of[(case, 'unchecked')]['seconds']} s vs {time_of[(case, 'checked')]['seconds']} s, "
            f"{time_of[(case, 'checked')]['outcome']}; failed: {', '.join(r['failed']) or 'none'}",
        )
        for case in ("scans", "exif", "segments", "chunks")
    ]


def _run_serve(quick: bool, opts: argparse.Namespace) -> dict[str, Any]:
    return importlib.import_module("bench_serve").run(quick)


def _vllm_url(opts: argparse.Namespace) -> str | None:
    return opts.vllm_url or os.environ.get("CAPTION_AGENT_TEST_VLLM_URL")


@dataclass(frozen=True)
class Bench:
    name: str
    run: Callable[[bool, argparse.Namespace], dict[str, Any]]
    rows: Callable[[dict[str, Any]], list[Row]]
    skip: Callable[[argparse.Namespace], str | None] = lambda opts: None


BENCHES: list[Bench] = [
    Bench("batch", lambda q, o: _script("bench_batch", ["--quick"] if q else []), _batch_rows),
    Bench("ingest", lambda q, o: _script("bench_ingest", ["--quick"] if q else []), _ingest_rows),
    Bench(
        "query", lambda q, o: _script("bench_query", ["--sizes", "1000", "--queries", "30"] if q else []), _query_rows
    ),
    Bench("embed", lambda q, o: _script("bench_embed", ["--quick"] if q else []), _embed_rows),
    Bench("coldstart", lambda q, o: _script("bench_coldstart", ["--quick"] if q else []), _coldstart_rows),
    Bench("drafter", lambda q, o: _script("bench_drafter", ["--quick"] if q else []), _drafter_rows),
    Bench("default_path", lambda q, o: _script("bench_default_path", ["--quick"] if q else []), _default_path_rows),
    Bench("stages", lambda q, o: _script("bench_stages", ["--quick"] if q else []), _stages_rows),
    Bench("image_memory", lambda q, o: _script("bench_image_memory", ["--quick"] if q else []), _image_memory_rows),
    Bench("hostile_jpeg", lambda q, o: _script("bench_hostile_images", ["--quick"] if q else []), _hostile_rows),
    Bench(
        "refiner_vllm",
        lambda q, o: _script("bench_refiner", ["--url", _vllm_url(o), "--no-local", *(["--quick"] if q else [])]),
        _refiner_rows,
        lambda o: None if _vllm_url(o) else "no server (--vllm-url or CAPTION_AGENT_TEST_VLLM_URL)",
    ),
    Bench(
        "serve",
        _run_serve,
        _serve_rows,
        lambda o: None if (HERE / "bench_serve.py").is_file() else "benchmarks/bench_serve.py absent",
    ),
]


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, Python/torch versions and GPU (nvidia-smi), read without importing torch."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
            platform.processor(),
        )
        mem = Path("/proc/meminfo").read_text().split()
        info["ram_gb"] = round(int(mem[mem.index("MemTotal:") + 1]) / 1024**2, 1)
    except (OSError, ValueError, StopIteration):
        info["cpu"] = platform.processor()
    for pkg in ("torch", "transformers", "chromadb"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    info["gpu"] = None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        info["gpu"] = out.stdout.strip() or None
    return info


def _child(name: str, quick: bool, opts: argparse.Namespace, out: Path) -> int:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    bench = next(b for b in BENCHES if b.name == name)
    out.write_text(json.dumps(bench.run(quick, opts)), encoding="utf-8")
    return 0


def run_one(bench: Bench, opts: argparse.Namespace) -> dict[str, Any]:
    """Run one benchmark in a child process; never raises."""
    reason = bench.skip(opts)
    if reason:
        return {"status": "skipped", "reason": reason}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", bench.name, "--child-out", str(out)]
        cmd += ["--quick"] if opts.quick else []
        cmd += ["--vllm-url", opts.vllm_url] if opts.vllm_url else []
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {opts.timeout_s} s"}
        seconds = round(time.perf_counter() - t0, 1)
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"status": "failed", "seconds": seconds, "reason": " | ".join(tail)[-400:]}
        result = json.loads(out.read_text(encoding="utf-8"))
    try:
        rows = bench.rows(result)
    except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        return {"status": "failed", "seconds": seconds, "reason": f"unexpected result shape: {exc!r}", "result": result}
    return {
        "status": "ok",
        "seconds": seconds,
        "ratios": [{"name": n, "value": v, "note": note} for n, v, note in rows],
        "result": result,
    }


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m.get('cpu')} x{m['cpu_count']}, {m.get('ram_gb')} GB RAM, GPU {m['gpu'] or 'none'}, "
        f"Python {m['python']}, torch {m['torch']}, load {m['load_avg']}",
        f"mode: {'quick' if report['quick'] else 'full'}",
        "",
        f"{'benchmark':14s}{'ratio':44s}{'value':>10s}  note",
        "-" * 110,
    ]
    for name, res in report["benchmarks"].items():
        if res["status"] != "ok":
            lines.append(f"{name:14s}{res['status'] + ': ' + res['reason']}"[:160])
            continue
        for row in res["ratios"]:
            lines.append(f"{name:14s}{row['name']:44s}{row['value']:>10}  {row['note']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smoke sizes (about 2-3 min on 2 cores).")
    parser.add_argument(
        "--only", default=None, help="Comma-separated benchmark names: " + ", ".join(b.name for b in BENCHES)
    )
    parser.add_argument("--vllm-url", default=None, help="vLLM server for the concurrency benchmark.")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="Per benchmark.")
    parser.add_argument("--out", type=Path, default=None, help="Write the JSON report here.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        sys.exit(_child(opts.child, opts.quick, opts, opts.child_out))
    names = [b.name for b in BENCHES]
    wanted = opts.only.split(",") if opts.only else names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {names}")
    report: dict[str, Any] = {"quick": opts.quick, "machine": machine(), "benchmarks": {}}
    t0 = time.perf_counter()
    for bench in BENCHES:
        if bench.name in wanted:
            print(f"running {bench.name} ...", file=sys.stderr, flush=True)
            report["benchmarks"][bench.name] = run_one(bench, opts)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(render(report))
    print(f"\n{report['seconds']} s in all", flush=True)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
