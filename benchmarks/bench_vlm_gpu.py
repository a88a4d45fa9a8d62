"""Realistic-size VLM drafting benchmark: random weights at the presets' real config sizes, fixed output length.

For each model (Florence-2-base, SmolVLM-256M, Qwen2.5-VL-3B; configs written from their public config.json /
model cards) and each batch size: images/s, p50/p95 latency per batch, peak GPU memory. Every generate() makes
exactly ``--new-tokens`` tokens (min = max new tokens, greedy), so random weights cost what trained ones would.
Inputs are built as the processors build them at the presets' limits (Florence-2: 768 px -> 577 image tokens;
SmolVLM: 1024 px -> 2x2 + 1 tiles of 512 px, 64 tokens each; Qwen2.5-VL: a 672x672 image -> 576 tokens), with
stand-in text ids, so no tokenizer or hub download is needed.

    python benchmarks/bench_vlm_gpu.py --out var/bench_vlm_gpu.json              # CUDA, bf16, real sizes
    python benchmarks/bench_vlm_gpu.py --small --device cpu --batch-sizes 1 2    # a quick CPU check

One script, sized for 15 minutes of GPU time including start-up (``--budget-s`` stops early and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

PROMPT_TOKENS = 12  # stand-in for the task prompt and chat framing


@dataclass
class Bench:
    name: str
    preset: str
    build: Callable[[bool], Any]  # small -> config
    inputs: Callable[[Any, int, bool, Any, Any], dict[str, Any]]  # config, batch, small, torch, device


# --- configs from the public model cards ---------------------------------------------------------------------------


def florence2_config(small: bool) -> Any:
    from transformers import BartConfig, Florence2Config, Florence2VisionConfig

    embed = [32, 64, 128, 256] if small else [128, 256, 512, 1024]
    vision = Florence2VisionConfig(
        depths=[1, 1, 1, 1] if small else [1, 1, 9, 1],
        embed_dim=embed,
        num_heads=[1, 2, 4, 8] if small else [4, 8, 16, 32],
        num_groups=[1, 2, 4, 8] if small else [4, 8, 16, 32],
        window_size=12,
        projection_dim=192 if small else 768,
        drop_path_rate=0.0,
    )
    d_model = 192 if small else 768
    text = BartConfig(
        vocab_size=51289,
        d_model=d_model,
        encoder_layers=2 if small else 6,
        decoder_layers=2 if small else 6,
        encoder_attention_heads=3 if small else 12,
        decoder_attention_heads=3 if small else 12,
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
        max_position_embeddings=1024,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    return Florence2Config(vision_config=vision, text_config=text, image_token_id=51288)


def florence2_inputs(cfg: Any, batch: int, small: bool, torch: Any, device: Any) -> dict[str, Any]:
    side = 384 if small else 768
    n_image = (side // 32) ** 2 + 1
    ids = torch.randint(3, 50000, (batch, n_image + PROMPT_TOKENS), device=device)
    ids[:, :n_image] = cfg.image_token_id
    return {"input_ids": ids, "pixel_values": torch.randn(batch, 3, side, side, device=device)}


def smolvlm_config(small: bool) -> Any:
    from transformers import Idefics3Config, Idefics3VisionConfig, LlamaConfig

    vision = Idefics3VisionConfig(
        hidden_size=192 if small else 768,
        intermediate_size=768 if small else 3072,
        num_hidden_layers=2 if small else 12,
        num_attention_heads=3 if small else 12,
        image_size=512,
        patch_size=16,
    )
    text = LlamaConfig(
        vocab_size=49280,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=4 if small else 30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        rope_theta=100000.0,
        max_position_embeddings=8192,
        pad_token_id=2,
        bos_token_id=1,
        eos_token_id=49279,
    )
    return Idefics3Config(vision_config=vision, text_config=text, scale_factor=4, image_token_id=49190)


def smolvlm_inputs(cfg: Any, batch: int, small: bool, torch: Any, device: Any) -> dict[str, Any]:
    tiles = 2 if small else 5  # 1024 px longest edge: 2x2 tiles of 512 + the global view
    per_tile = (512 // 16) ** 2 // 16
    ids = torch.randint(3, 49000, (batch, tiles * per_tile + PROMPT_TOKENS), device=device)
    ids[:, : tiles * per_tile] = cfg.image_token_id
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(batch, tiles, 3, 512, 512, device=device),
        "pixel_attention_mask": torch.ones(batch, tiles, 512, 512, dtype=torch.bool, device=device),
    }


def qwen25vl_config(small: bool) -> Any:
    from transformers import Qwen2_5_VLConfig

    hidden = 512 if small else 2048
    return Qwen2_5_VLConfig(
        vision_config=dict(
            depth=2 if small else 32,
            hidden_size=320 if small else 1280,
            intermediate_size=856 if small else 3420,
            num_heads=4 if small else 16,
            out_hidden_size=hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[1] if small else [7, 15, 23, 31],
        ),
        text_config=dict(
            vocab_size=151936,
            hidden_size=hidden,
            intermediate_size=2752 if small else 11008,
            num_hidden_layers=2 if small else 36,
            num_attention_heads=4 if small else 16,
            num_key_value_heads=2,
            max_position_embeddings=128000,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            bos_token_id=151643,
            eos_token_id=151645,
            tie_word_embeddings=True,
        ),
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
    )


def qwen25vl_inputs(cfg: Any, batch: int, small: bool, torch: Any, device: Any) -> dict[str, Any]:
    grid = 16 if small else 48  # patches per side: 224 or 672 px
    n_image = grid * grid // 4
    ids = torch.randint(0, 150000, (batch, n_image + 2 + PROMPT_TOKENS), device=device)
    ids[:, 0], ids[:, n_image + 1] = cfg.vision_start_token_id, cfg.vision_end_token_id
    ids[:, 1 : n_image + 1] = cfg.image_token_id
    patch_dim = 3 * 2 * 14 * 14
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(batch * grid * grid, patch_dim, device=device),
        "image_grid_thw": torch.tensor([[1, grid, grid]] * batch, device=device),
    }


BENCHES = [
    Bench("Florence-2-base", "florence-2-base", florence2_config, florence2_inputs),
    Bench("SmolVLM-256M", "smolvlm-256m", smolvlm_config, smolvlm_inputs),
    Bench("Qwen2.5-VL-3B", "qwen2.5-vl-3b", qwen25vl_config, qwen25vl_inputs),
]


# --- measurement ---------------------------------------------------------------------------------------------------


def run_model(bench: Bench, args: argparse.Namespace, torch: Any, deadline: float) -> dict[str, Any]:
    from transformers import AutoModelForImageTextToText

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    cfg = bench.build(args.small)
    with device:
        model = AutoModelForImageTextToText.from_config(cfg, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    result: dict[str, Any] = {
        "model": bench.name,
        "preset": bench.preset,
        "params_b": round(params / 1e9, 3),
        "build_s": round(time.perf_counter() - t0, 1),
        "weights_gb": round(params * torch.finfo(dtype).bits / 8 / 1e9, 2),
        "batches": [],
    }
    for batch in args.batch_sizes:
        if time.perf_counter() > deadline:
            result["stopped"] = f"time budget reached before batch {batch}"
            break
        inputs = bench.inputs(cfg, batch, args.small, torch, device)
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        gen = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, num_beams=1)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            times = []
            for i in range(args.warmup + args.repeats):
                _sync(torch, cuda)
                start = time.perf_counter()
                with torch.inference_mode():
                    out = model.generate(**inputs, **gen)
                _sync(torch, cuda)
                if i >= args.warmup:
                    times.append(time.perf_counter() - start)
        except torch.OutOfMemoryError:
            result["batches"].append({"batch": batch, "error": "CUDA out of memory"})
            break
        # Decoder-only outputs repeat the prompt; encoder-decoder outputs start with the decoder start token.
        made = out.shape[1] - (1 if model.config.is_encoder_decoder else inputs["input_ids"].shape[1])
        p50 = statistics.median(times)
        row = {
            "batch": batch,
            "new_tokens": int(made),
            "p50_s": round(p50, 4),
            "p95_s": round(_percentile(times, 95), 4),
            "images_per_s": round(batch / p50, 2),
            "tokens_per_s": round(batch * made / p50, 1),
            "input_tokens": int(inputs["input_ids"].shape[1]),
        }
        if cuda:
            row["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
        result["batches"].append(row)
        print(json.dumps({"model": bench.name, **row}), flush=True)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return result


def _sync(torch: Any, cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    parser.add_argument("--dtype", default=None, help="bfloat16 on CUDA (default), float32 on CPU")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--new-tokens", type=int, default=32, help="Tokens per caption (min = max).")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=[b.preset for b in BENCHES], help="Presets to run.")
    parser.add_argument("--small", action="store_true", help="Shrunken configs (CPU smoke run), not real sizes.")
    parser.add_argument("--budget-s", type=float, default=660.0, help="Stop starting new batches after this.")
    parser.add_argument("--out", type=Path, default=None, help="JSON report path (default: $OUT or stdout only).")
    args = parser.parse_args(argv)

    import torch
    import transformers

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    args.batch_sizes = args.batch_sizes or ([1, 4, 16, 32] if args.device == "cuda" else [1, 2])
    deadline = time.perf_counter() + args.budget_s
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "dtype": args.dtype,
        "sizes": "small (shrunken configs)" if args.small else "real config sizes",
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "models": [],
    }
    torch.manual_seed(0)
    for bench in BENCHES:
        if bench.preset not in args.models:
            continue
        try:
            report["models"].append(run_model(bench, args, torch, deadline))
        except Exception as exc:  # noqa: BLE001 - one model's failure is a row, not the end of the run
            report["models"].append({"model": bench.name, "error": f"{type(exc).__name__}: {exc}"[:500]})
            print(f"{bench.name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    out = args.out or (Path(os.environ["OUT"]) / "bench_vlm_gpu.json" if os.environ.get("OUT") else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if all("error" not in m for m in report["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
