"""Stage-1 throughput on a CUDA machine: the transformers drafter vs the vLLM drafter, same model, batch 1/8/32.

    # a real VLM (hub id or folder) served by vLLM from the same environment (pip install vllm):
    python benchmarks/gpu_drafters.py --model Qwen/Qwen2.5-VL-3B-Instruct --out drafters.json
    # an already running server instead of starting one:
    python benchmarks/gpu_drafters.py --model M --vllm-url http://127.0.0.1:8000/v1 --vllm-model M
    # no weights at hand: a tiny random LLaVA is built and used by both backends (a smoke run of the plumbing)
    python benchmarks/gpu_drafters.py --budget-s 300

images/s = images drafted / wall seconds of one ``Drafter.draft`` call over the batch (N candidates each, same
decoding, same token budget). The transformers drafter runs first and is freed before vLLM starts, so both get
the whole GPU. Each setting is timed ``--repeats`` times after one warm-up call and the fastest kept. New settings
stop starting once ``--budget-s`` is spent; what was measured is still written. ``vllm_vs_transformers`` is the
ratio of images/s at the same batch size, measured in this run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def photos(count: int) -> list[Any]:
    """Real photos from the repository's examples (bundled), cycled and varied in size, as RGB PIL images."""
    from PIL import Image

    files = sorted((ROOT / "examples" / "images").glob("*.jpg"))
    base = [Image.open(f).convert("RGB") for f in files] or [Image.new("RGB", (640, 480), (120, 90, 60))]
    return [base[i % len(base)].resize((448 + 16 * (i % 5), 448)) for i in range(count)]


def infos(images: list[Any]) -> list[Any]:
    from caption_agent.schemas import ImageInfo

    return [
        ImageInfo(source=f"bench{i}", sha256=f"{i:064d}", width=im.width, height=im.height)
        for i, im in enumerate(images)
    ]


def tiny_vlm(folder: Path) -> Path:
    spec = importlib.util.spec_from_file_location("tiny_models", ROOT / "tests" / "drafters" / "tiny_models.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.build_tiny_llava(folder / "tiny-llava")


def time_drafter(drafter: Any, batches: list[int], n: int, repeats: int, deadline: float) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        if time.monotonic() > deadline:
            rows.append({"batch": batch, "skipped": "budget spent"})
            continue
        images = photos(batch)
        drafter.draft(images[:1], infos(images[:1]), n)  # warm-up: kernels, caches, connections
        best = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            drafts = drafter.draft(images, infos(images), n)
            wall = time.perf_counter() - t0
            cands = sum(len(d.candidates) for d in drafts)
            if best is None or wall < best["wall_s"]:
                best = {
                    "batch": batch,
                    "wall_s": round(wall, 4),
                    "images_per_s": round(batch / wall, 3),
                    "candidates": cands,
                }
        rows.append(best)
        print(f"  {drafter.name:12s} batch {batch:3d}: {best['images_per_s']:9.2f} images/s", flush=True)
    return rows


def run_transformers(model: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    import torch

    from caption_agent.config import TransformersDrafterSettings
    from caption_agent.drafters.hf import TransformersDrafter

    settings = TransformersDrafterSettings(
        model=model, decoding=args.decoding, max_new_tokens=args.max_new_tokens, batch_size=max(args.batches)
    )
    t0 = time.perf_counter()
    drafter = TransformersDrafter(settings)
    load_s = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    rows = time_drafter(drafter, args.batches, args.n, args.repeats, deadline)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    out = {
        "model_id": drafter.model_id,
        "device": drafter.device,
        "dtype": str(drafter.dtype),
        "load_s": round(load_s, 2),
        "peak_gpu_gib": round(peak, 2) if peak else None,
        "rows": rows,
    }
    drafter.close()
    del drafter
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def launch_vllm(
    python: str, model: str, name: str, extra: Sequence[str], timeout_s: float, log_name: str = "vllm"
) -> tuple[subprocess.Popen, str]:
    """`python -m vllm.entrypoints.openai.api_server` on a free loopback port; returns (process, base URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]
    log = open(Path(tempfile.gettempdir()) / f"{log_name}_{port}.log", "wb")  # noqa: SIM115 - the server's stdout
    env = dict(os.environ, VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=5) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(2)
    proc.terminate()
    raise RuntimeError(f"vLLM was not ready within {timeout_s:.0f} s; see {log.name}")


def start_vllm(python: str, model: str, name: str, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """The multimodal server for the drafter benchmark (one image per prompt)."""
    extra = [
        "--max-model-len",
        str(args.max_model_len),
        "--limit-mm-per-prompt",
        json.dumps({"image": 1}),
        *args.vllm_arg,
    ]
    return launch_vllm(python, model, name, extra, args.server_timeout_s, "gpu_drafters_vllm")


def run_vllm(url: str, name: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    from caption_agent.config import VLLMDrafterSettings
    from caption_agent.drafters.vllm import VLLMDrafter

    settings = VLLMDrafterSettings(
        base_url=url,
        model=name,
        decoding=args.decoding,
        max_new_tokens=args.max_new_tokens,
        max_concurrency=max(args.batches),
        timeout_s=300,
    )
    drafter = VLLMDrafter(settings)  # sends one real image request first
    rows = time_drafter(drafter, args.batches, args.n, args.repeats, deadline)
    drafter.close()
    return {"model_id": drafter.model_id, "rows": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="VLM hub id or folder; a tiny random LLaVA when unset or not loadable")
    parser.add_argument("--vllm-url", help="a running vLLM server (else one is started)")
    parser.add_argument("--vllm-model", help="served model name at --vllm-url")
    parser.add_argument("--vllm-python", default=sys.executable, help="python that has vllm, to start a server")
    parser.add_argument(
        "--vllm-arg",
        action="append",
        default=[],
        help="extra server flag, repeatable, e.g. --vllm-arg=--gpu-memory-utilization=0.6",
    )
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--n", type=int, default=3, help="candidates per image")
    parser.add_argument("--decoding", choices=["beam", "sample"], default="beam")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=900.0, help="stop starting new settings after this")
    parser.add_argument("--server-timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    report: dict[str, Any] = {
        "host": platform.node(),
        "python": platform.python_version(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        try:
            import torch

            report["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
            print(f"transformers drafter ({model or 'tiny random LLaVA'}):", flush=True)
            report["transformers"] = run_transformers(model, args, deadline) if model else None
        except Exception as exc:  # noqa: BLE001 - no weights here: fall back to the tiny model, say so
            report["model_error"] = f"{type(exc).__name__}: {exc}"[:500]
            print(f"  cannot use {model!r} ({report['model_error'][:120]}); using a tiny random LLaVA", flush=True)
            model = None
        if model is None:
            model = str(tiny_vlm(Path(tmp)))
            report["tiny_model"] = True
            report["transformers"] = run_transformers(model, args, deadline)
        if not args.skip_vllm and time.monotonic() < deadline:
            print("vllm drafter:", flush=True)
            proc = None
            try:
                url, name = args.vllm_url, args.vllm_model or "bench-vlm"
                if url is None:
                    proc, url = start_vllm(args.vllm_python, model, name, args)
                report["vllm"] = run_vllm(url, name, args, deadline)
            except Exception as exc:  # noqa: BLE001 - keep the transformers numbers
                report["vllm_error"] = f"{type(exc).__name__}: {exc}"[:500]
                print(f"  vllm failed: {report['vllm_error']}", flush=True)
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=60)
    hf = {r["batch"]: r for r in report["transformers"]["rows"] if "images_per_s" in r}
    vl = {r["batch"]: r for r in (report.get("vllm") or {}).get("rows", []) if "images_per_s" in r}
    report["vllm_vs_transformers"] = {
        b: round(vl[b]["images_per_s"] / hf[b]["images_per_s"], 3) for b in sorted(hf.keys() & vl.keys())
    }
    print(json.dumps({"vllm_vs_transformers": report["vllm_vs_transformers"]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
