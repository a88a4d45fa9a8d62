"""One-command GPU benchmark: the drafters and the refiners on whatever weights are here, within a time budget.

    python benchmarks/gpu_bench.py --budget-s 600 --out gpu.json
    python benchmarks/gpu_bench.py --drafter-model Qwen/Qwen2.5-VL-3B-Instruct \
        --refiner-model Qwen/Qwen2.5-1.5B-Instruct
    python benchmarks/gpu_bench.py --vllm-url http://127.0.0.1:8000/v1 --vllm-model NAME   # a running refiner server

1. Drafters (benchmarks/gpu_drafters.py): the transformers drafter, and the vLLM drafter when the ``vllm`` package
   and CUDA are present, on ``--drafter-model`` or the first image-text model in the local Hugging Face cache;
   with none, a tiny random LLaVA (a smoke run of the plumbing, not a quality number).
2. vLLM refiner (benchmarks/bench_refiner.py) at concurrency 1/4/16: against ``--vllm-url``, or a server started
   here from ``--refiner-model`` / the first causal LM in the cache when ``vllm`` and CUDA are present.
3. The local transformers refiner (bundled SmolLM2-135M) on the same prompts, on the GPU when there is one.
A part stops starting new settings once the budget is spent; what was measured is always written.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
_VLM_HINTS = ("ForConditionalGeneration", "VisionEncoderDecoder", "ForImageTextToText", "Vision", "VL")


def cached_models() -> dict[str, list[str]]:
    """Hub ids in the local Hugging Face cache, split into image-text models and causal LMs by config.json."""
    root = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    found: dict[str, list[str]] = {"vlm": [], "llm": []}
    for folder in sorted(root.glob("models--*")):
        configs = sorted(folder.glob("snapshots/*/config.json"))
        if not configs:
            continue
        try:
            archs = json.loads(configs[-1].read_text()).get("architectures") or []
        except (OSError, ValueError):
            continue
        hub_id = folder.name[len("models--") :].replace("--", "/")
        if any(h in a for a in archs for h in _VLM_HINTS):
            found["vlm"].append(hub_id)
        elif any(a.endswith("ForCausalLM") for a in archs):
            found["llm"].append(hub_id)
    return found


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _has_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def drafters(model: str | None, quick: bool, vllm_ok: bool, budget: float) -> dict[str, Any]:
    import gpu_drafters

    argv = ["--budget-s", str(int(budget))]
    argv += ["--model", model] if model else []
    argv += [] if vllm_ok else ["--skip-vllm"]
    argv += ["--batches", "1,2", "--repeats", "1", "--max-new-tokens", "8"] if quick else []
    return gpu_drafters.main(argv)


def start_text_server(model: str, name: str, timeout_s: float) -> tuple[subprocess.Popen, str]:
    """A vLLM OpenAI server for a text model on a free loopback port; returns (process, base URL)."""
    import gpu_drafters

    return gpu_drafters.launch_vllm(
        sys.executable, model, name, ["--max-model-len", "2048"], timeout_s, "gpu_bench_vllm"
    )


def vllm_refiner(
    url: str | None, served: str | None, model: str | None, quick: bool, deadline: float
) -> dict[str, Any]:
    import bench_refiner

    proc = None
    try:
        if url is None:
            if not (model and _has_vllm() and _cuda()):
                return {
                    "skipped": "no vLLM server: pass --vllm-url, or have the vllm package, CUDA and a causal LM "
                    "(--refiner-model or one in the Hugging Face cache)"
                }
            served = "bench-refiner"
            proc, url = start_text_server(model, served, min(600.0, _left(deadline)))
        if _left(deadline) < 10:
            return {"skipped": "budget spent"}
        n, repeats = (16, 1) if quick else (48, 2)
        return bench_refiner.run(url, served, n, "alt_text", 64, repeats, [1, 4, 16], local=False)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)


def local_refiner(quick: bool) -> dict[str, Any]:
    import bench_refiner

    n, repeats = (4, 1) if quick else (16, 2)
    return bench_refiner.run_local(bench_refiner.make_jobs(n, "alt_text"), 32 if quick else 64, repeats)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=600.0, help="Wall-clock budget for the whole run.")
    parser.add_argument("--drafter-model", help="VLM hub id or folder (else the cache's first, else a tiny one).")
    parser.add_argument("--refiner-model", help="Causal LM hub id or folder to serve with vLLM.")
    parser.add_argument(
        "--vllm-url",
        default=os.environ.get("CAPTION_AGENT_TEST_VLLM_URL"),
        help="A running vLLM refiner server (OpenAI API base URL).",
    )
    parser.add_argument(
        "--vllm-model", default=os.environ.get("CAPTION_AGENT_TEST_VLLM_MODEL"), help="Served model name at --vllm-url."
    )
    parser.add_argument("--quick", action="store_true", help="Smoke sizes (CPU-friendly).")
    parser.add_argument("--out", type=Path, default=None, help="Write the JSON report here.")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    deadline = t0 + args.budget_s
    from run_all import machine

    cache = cached_models()
    cuda, vllm_ok = _cuda(), _has_vllm()
    report: dict[str, Any] = {
        "machine": machine(),
        "cuda": cuda,
        "vllm_installed": vllm_ok,
        "cached_models": cache,
        "budget_s": args.budget_s,
        "parts": {},
    }
    parts = report["parts"]
    drafter_model = args.drafter_model or (cache["vlm"][0] if cache["vlm"] else None)
    try:  # the drafters get half the budget; the refiners share what is left
        parts["drafters"] = drafters(drafter_model, args.quick, vllm_ok and cuda, _left(deadline) / 2)
    except Exception as exc:  # noqa: BLE001 - keep going: the other parts still measure
        parts["drafters"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    try:
        parts["vllm_refiner"] = vllm_refiner(
            args.vllm_url,
            args.vllm_model,
            args.refiner_model or (cache["llm"][0] if cache["llm"] else None),
            args.quick,
            deadline,
        )
    except Exception as exc:  # noqa: BLE001
        parts["vllm_refiner"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    if _left(deadline) > 0:
        try:
            parts["local_refiner"] = local_refiner(args.quick)
        except Exception as exc:  # noqa: BLE001
            parts["local_refiner"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    else:
        parts["local_refiner"] = {"skipped": "budget spent"}
    report["seconds"] = round(time.monotonic() - t0, 1)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
