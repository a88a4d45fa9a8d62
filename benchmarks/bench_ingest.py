"""Ingestion throughput as a ratio to the raw embedder's encode throughput on the same texts, same run.

    python benchmarks/bench_ingest.py [--quick] [--n 2000] [--batch-size 64] [--out results.json]

ratio = ingest products/s (validate + hash + embed + Chroma upsert, whole file) / raw encode texts/s.
The raw encode is timed before and after the ingestion and averaged, to bracket drift in machine load.
Also reports a re-ingestion of the unchanged file (hash skip path) and of a file with 10% changed rows.
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
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the synthetic_catalog helper beside this file

from synthetic_catalog import synthetic_products, write_jsonl  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def run(n: int, batch_size: int) -> dict[str, Any]:
    import torch

    from agent.config import RetrievalSettings
    from retrieval import CatalogStore, ingest_file
    from retrieval.embedders import get_embedder

    embedder = get_embedder(None)
    products = list(synthetic_products(n))
    texts = [p.embedding_text() for p in products]
    embedder.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first call allocates

    def raw_encode() -> float:
        t0 = time.perf_counter()
        embedder.encode(texts, batch_size=batch_size)
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        catalog = write_jsonl(iter(products), tmp_path / "catalog.jsonl")
        settings = RetrievalSettings(catalog_dir=tmp_path / "store")
        raw_before = raw_encode()
        with CatalogStore.open(settings, embedder, writer=True) as store:
            full = ingest_file(catalog, store, batch_size=batch_size)
            raw_after = raw_encode()
            again = ingest_file(catalog, store, batch_size=batch_size)
            changed = [p.model_copy(update={"description": p.description + " Now in a new box."})
                       if i % 10 == 0 else p for i, p in enumerate(products)]
            delta = ingest_file(write_jsonl(iter(changed), tmp_path / "changed.jsonl"), store, batch_size=batch_size)
    raw_s = (raw_before + raw_after) / 2
    raw_rate = n / raw_s
    ingest_rate = n / full.seconds
    return {
        "n": n, "batch_size": batch_size, "embedder": embedder.model_id, "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "raw_encode_s": [round(raw_before, 3), round(raw_after, 3)], "raw_texts_per_s": round(raw_rate, 1),
        "ingest_s": round(full.seconds, 3), "ingest_embed_s": round(full.embed_seconds, 3),
        "ingest_products_per_s": round(ingest_rate, 1), "ratio": round(ingest_rate / raw_rate, 3),
        "reingest_unchanged_s": round(again.seconds, 3), "reingest_unchanged_per_s": round(n / again.seconds, 1),
        "reingest_10pct_changed_s": round(delta.seconds, 3),
        "reingest_10pct_counts": {"updated": delta.updated, "unchanged": delta.unchanged},
        "target_ratio": 0.9,
    }


def render(res: dict[str, Any]) -> str:
    rows = [("products", res["n"]), ("batch size", res["batch_size"]),
            ("raw encode texts/s", res["raw_texts_per_s"]), ("ingest products/s", res["ingest_products_per_s"]),
            ("ratio ingest/raw (target >= 0.9)", res["ratio"]),
            ("re-ingest unchanged: s", res["reingest_unchanged_s"]),
            ("re-ingest unchanged: products/s", res["reingest_unchanged_per_s"]),
            ("re-ingest 10% changed: s", res["reingest_10pct_changed_s"])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 products (smoke run, ~10-30 s).")
    parser.add_argument("--n", type=int, default=None, help="Products (default 2000, 300 with --quick).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    n = args.n or (300 if args.quick else 2000)
    res = run(n, args.batch_size)
    print(render(res))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
