"""Embedder runtimes in one run: ingestion with onnxruntime vs the torch (sentence-transformers) encoder.

    python benchmarks/bench_embed.py [--quick] [--n 2000] [--rounds 3] [--threads N] [--out results.json]

Both sides run with the same thread budget (torch.set_num_threads(N) and onnxruntime intra-op threads N, default
torch's own count). Rounds alternate torch / ONNX (order flipped each round) so drift in machine load hits both;
the headline is the ratio of summed wall times. Also reports: raw encode texts/s of torch, ONNX fp32 and ONNX int8;
cosine of ONNX fp32 and int8 vectors to torch's; retrieval agreement (top-1 and top-10 overlap of catalog queries
answered by each store) for fp32 and int8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the synthetic_catalog helper beside this file

from synthetic_catalog import synthetic_products, write_jsonl  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _wall(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _topk(vectors: Any, queries: Any, k: int) -> Any:
    import numpy as np

    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


def agreement(ref_vecs: Any, ref_q: Any, vecs: Any, q: Any, k: int = 10) -> dict[str, float]:
    """How often the same queries find the same products (brute force, cosine) with two sets of vectors."""
    a, b = _topk(ref_vecs, ref_q, k), _topk(vecs, q, k)
    top1 = float((a[:, 0] == b[:, 0]).mean())
    overlap = float(sum(len(set(x) & set(y)) for x, y in zip(a, b)) / (k * len(a)))
    return {"top1_same": round(top1, 4), f"top{k}_overlap": round(overlap, 4)}


def run(n: int, rounds: int, threads: int | None, batch_size: int = 64) -> dict[str, Any]:
    import numpy as np
    import torch

    from caption_agent.config import RetrievalSettings
    from caption_agent.embedders import OnnxEmbedder, SentenceTransformerEmbedder
    from caption_agent.retrieval import CatalogStore, ingest_file

    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    t_load, st = _wall(lambda: SentenceTransformerEmbedder())
    o_load, onnx = _wall(lambda: OnnxEmbedder(threads=threads))
    q_load, int8 = _wall(lambda: OnnxEmbedder(int8=True, threads=threads))
    products = list(synthetic_products(n))
    texts = [p.embedding_text() for p in products]
    queries = [f"{p.title} {p.brand or ''}".strip() for p in products[:: max(1, n // 200)]]
    for e in (st, onnx, int8):
        e.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first call allocates

    raw: dict[str, list[float]] = {"torch": [], "onnx": [], "onnx_int8": []}
    vecs: dict[str, Any] = {}
    for i in range(rounds):
        order = list(raw) if i % 2 == 0 else list(reversed(raw))
        for name in order:
            enc = {"torch": st, "onnx": onnx, "onnx_int8": int8}[name]
            wall, vecs[name] = _wall(lambda: enc.encode(texts, batch_size=batch_size))
            raw[name].append(wall)
    qv = {name: enc.encode(queries) for name, enc in (("torch", st), ("onnx", onnx), ("onnx_int8", int8))}
    cos = {name: (vecs[name] * vecs["torch"]).sum(axis=1) for name in ("onnx", "onnx_int8")}

    ingest: dict[str, list[float]] = {"torch": [], "onnx": []}
    same_results = None
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        tmp_path = Path(tmp)
        catalog = write_jsonl(iter(products), tmp_path / "catalog.jsonl")
        stores = {
            (name, i): CatalogStore.open(
                RetrievalSettings(catalog_dir=tmp_path / f"{name}{i}"), {"torch": st, "onnx": onnx}[name], writer=True
            )
            for name in ingest
            for i in range(rounds)
        }
        for i in range(rounds):
            for name in list(ingest) if i % 2 == 0 else list(reversed(ingest)):
                wall, summary = _wall(lambda: ingest_file(catalog, stores[(name, i)], batch_size=batch_size))
                assert summary.added == n, summary.render()
                ingest[name].append(wall)
            last = {k: round(v[-1], 1) for k, v in ingest.items()}
            print(f"  round {i + 1}/{rounds}: ingest s {last}", file=sys.stderr)
        # Unchanged retrieval: every query finds the same skus in the same order in both stores.
        found = {
            name: [[m.product.sku for m in row] for row in stores[(name, 0)].query_many(qv[name], 10)]
            for name in ingest
        }
        same_results = sum(a == b for a, b in zip(found["torch"], found["onnx"])) / len(queries)
        for store in stores.values():
            store.close()
    ing_t, ing_o = sum(ingest["torch"]), sum(ingest["onnx"])
    return {
        "n": n,
        "rounds": rounds,
        "threads": threads,
        "batch_size": batch_size,
        "load_s": {"torch": round(t_load, 2), "onnx": round(o_load, 2), "onnx_int8": round(q_load, 2)},
        "raw_texts_per_s": {k: round(n * rounds / sum(v), 1) for k, v in raw.items()},
        "raw_onnx_vs_torch": round(sum(raw["torch"]) / sum(raw["onnx"]), 3),
        "raw_int8_vs_torch": round(sum(raw["torch"]) / sum(raw["onnx_int8"]), 3),
        "ingest_products_per_s": {"torch": round(n * rounds / ing_t, 1), "onnx": round(n * rounds / ing_o, 1)},
        "ingest_onnx_vs_torch": round(ing_t / ing_o, 3),
        "ingest_ratio_per_round": [round(t / o, 3) for t, o in zip(ingest["torch"], ingest["onnx"])],
        "cosine_to_torch": {
            k: {"mean": round(float(v.mean()), 6), "min": round(float(v.min()), 6)} for k, v in cos.items()
        },
        "retrieval_agreement": {
            "onnx": agreement(vecs["torch"], qv["torch"], vecs["onnx"], qv["onnx"]),
            "onnx_int8": agreement(vecs["torch"], qv["torch"], vecs["onnx_int8"], qv["onnx_int8"]),
        },
        "store_top10_identical_share": round(float(same_results), 4),
        "queries": len(queries),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "max_abs_diff_fp32": round(float(np.abs(vecs["onnx"] - vecs["torch"]).max()), 7),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 products, 2 rounds (smoke run).")
    parser.add_argument("--n", type=int, default=None, help="Products (default 2000, 300 with --quick).")
    parser.add_argument("--rounds", type=int, default=None, help="Alternating rounds (3; 2 quick).")
    parser.add_argument("--threads", type=int, default=None, help="Threads for both runtimes (torch's default).")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    n = args.n or (300 if args.quick else 2000)
    res = run(n, args.rounds or (2 if args.quick else 3), args.threads)
    print(json.dumps(res, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
