"""Ingestion throughput as a ratio to the raw embedder's encode throughput on the same texts, same run.

    python benchmarks/bench_ingest.py [--quick] [--n 2000] [--rounds 3] [--batch-size 64] [--out results.json]

ratio = ingest products/s (validate + hash + embed + Chroma upsert, the whole file, into an empty store)
divided by raw ``embedder.encode(texts)`` texts/s. Raw and ingest runs alternate for ``--rounds`` rounds
(the order flips each round) so drift in machine load hits both; the headline is the ratio of the summed
wall times, with the per-round ratios and the process-CPU-time ratio beside it. Also reports re-ingesting
the unchanged file (the hash skip path) and a file with 10% changed rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the synthetic_catalog helper beside this file

from synthetic_catalog import synthetic_products, write_jsonl  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _clock(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, process CPU s over all threads, result)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def run(n: int, batch_size: int, rounds: int) -> dict[str, Any]:
    import torch

    from caption_agent.config import RetrievalSettings
    from caption_agent.embedders import get_embedder
    from caption_agent.retrieval import CatalogStore, ingest_file

    embedder = get_embedder(None)
    products = list(synthetic_products(n))
    texts = [p.embedding_text() for p in products]
    embedder.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first call allocates

    raw: list[tuple[float, float]] = []
    ing: list[tuple[float, float]] = []
    encode_in_ingest = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        catalog = write_jsonl(iter(products), tmp_path / "catalog.jsonl")

        stores = [
            CatalogStore.open(RetrievalSettings(catalog_dir=tmp_path / f"store{i}"), embedder, writer=True)
            for i in range(rounds)
        ]  # opened (and collections created) outside the clock: one-off setup

        for i in range(rounds):
            steps = ["raw", "ingest"] if i % 2 == 0 else ["ingest", "raw"]
            for step in steps:
                if step == "raw":
                    wall, cpu, _ = _clock(lambda: embedder.encode(texts, batch_size=batch_size))
                    raw.append((wall, cpu))
                else:
                    wall, cpu, summary = _clock(lambda: ingest_file(catalog, stores[i], batch_size=batch_size))
                    assert summary.added == n, summary.render()
                    encode_in_ingest += summary.embed_seconds
                    ing.append((wall, cpu))
            print(f"  round {i + 1}/{rounds}: raw {raw[-1][0]:.1f}s ingest {ing[-1][0]:.1f}s", file=sys.stderr)
        store = stores[0]
        again = ingest_file(catalog, store, batch_size=batch_size)
        changed = [
            p.model_copy(update={"description": p.description + " Now in a new box."}) if i % 10 == 0 else p
            for i, p in enumerate(products)
        ]
        delta = ingest_file(write_jsonl(iter(changed), tmp_path / "changed.jsonl"), store, batch_size=batch_size)
        for opened in stores:
            opened.close()
    raw_wall, ing_wall = sum(w for w, _ in raw), sum(w for w, _ in ing)
    raw_cpu, ing_cpu = sum(c for _, c in raw), sum(c for _, c in ing)
    return {
        "n": n,
        "batch_size": batch_size,
        "rounds": rounds,
        "embedder": embedder.model_id,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "raw_wall_s": [round(w, 2) for w, _ in raw],
        "ingest_wall_s": [round(w, 2) for w, _ in ing],
        "raw_texts_per_s": round(n * rounds / raw_wall, 1),
        "ingest_products_per_s": round(n * rounds / ing_wall, 1),
        "ratio": round(raw_wall / ing_wall, 3),
        "ratio_per_round": [round(r[0] / g[0], 3) for r, g in zip(raw, ing)],
        "ratio_cpu_time": round(raw_cpu / ing_cpu, 3),
        # Load-independent view of the overhead: the part of ingest wall time spent outside encode().
        "encode_share_of_ingest": round(encode_in_ingest / ing_wall, 3),
        "reingest_unchanged_s": round(again.seconds, 3),
        "reingest_unchanged_per_s": round(n / again.seconds, 1),
        "reingest_10pct_changed_s": round(delta.seconds, 3),
        "reingest_10pct_counts": {"updated": delta.updated, "unchanged": delta.unchanged},
        "target_ratio": 0.9,
    }


def render(res: dict[str, Any]) -> str:
    rows = [
        ("products x rounds", f"{res['n']} x {res['rounds']}"),
        ("batch size", res["batch_size"]),
        ("raw encode texts/s", res["raw_texts_per_s"]),
        ("ingest products/s", res["ingest_products_per_s"]),
        ("ratio ingest/raw (target >= 0.9)", res["ratio"]),
        ("  per round", res["ratio_per_round"]),
        ("  by process CPU time", res["ratio_cpu_time"]),
        ("share of ingest time inside encode()", res["encode_share_of_ingest"]),
        ("re-ingest unchanged: s", res["reingest_unchanged_s"]),
        ("re-ingest unchanged: products/s", res["reingest_unchanged_per_s"]),
        ("re-ingest 10% changed: s", res["reingest_10pct_changed_s"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 products, 2 rounds (smoke run).")
    parser.add_argument("--n", type=int, default=None, help="Products (default 2000, 300 with --quick).")
    parser.add_argument("--rounds", type=int, default=None, help="Alternating raw/ingest rounds (3; 2 quick).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    n = args.n or (300 if args.quick else 2000)
    res = run(n, args.batch_size, args.rounds or (2 if args.quick else 3))
    print(render(res))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
