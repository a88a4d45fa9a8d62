"""Query latency (p50/p95) at 10k and 100k synthetic products in an embedded Chroma store.

    python benchmarks/bench_query.py [--quick] [--sizes 10000 100000] [--queries 200] [--out results.json]

Product vectors are precomputed: a pool of real MiniLM embeddings of synthetic product texts, each copy
perturbed with small noise and renormalised, so the index sees clustered, realistic vectors without
embedding 100k texts on a CPU. Queries are real: ``Retriever.facts`` embeds a draft caption, queries
Chroma and builds the facts. Reported per size: end-to-end facts() latency, store-only latency with a
precomputed query vector, and store-only latency with a brand filter and a brand+category ``$and`` filter.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the synthetic_catalog helper beside this file

from synthetic_catalog import draft_queries, synthetic_products  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

POOL = 512  # distinct real embeddings the synthetic vectors are drawn around


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


def _timed(fn: Callable[[int], Any], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def build(store: Any, n: int, pool_vecs: np.ndarray, rng: np.random.Generator, chunk: int = 5000) -> float:
    """Insert ``n`` synthetic products with precomputed vectors; returns seconds."""
    t0 = time.perf_counter()
    products = synthetic_products(n)
    done = 0
    while done < n:
        part = [next(products) for _ in range(min(chunk, n - done))]
        base = pool_vecs[rng.integers(0, len(pool_vecs), len(part))]
        vecs = base + rng.normal(0, 0.02, base.shape).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        store.upsert(part, vecs.astype(np.float32))
        done += len(part)
    return time.perf_counter() - t0


def run(sizes: Sequence[int], n_queries: int) -> dict[str, Any]:
    from caption_agent.config import RetrievalSettings
    from caption_agent.embedders import get_embedder
    from caption_agent.retrieval import CatalogStore, Retriever
    from caption_agent.schemas import ProductHint

    embedder = get_embedder(None)
    pool_vecs = embedder.encode([p.embedding_text() for p in synthetic_products(POOL, seed=99)])
    queries = draft_queries(n_queries)
    query_vecs = embedder.encode(queries)
    rng = np.random.default_rng(0)
    results: list[dict[str, Any]] = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
            settings = RetrievalSettings(catalog_dir=Path(tmp) / "store")
            with CatalogStore.open(settings, embedder, writer=True) as store:
                build_s = build(store, size, pool_vecs, rng)
                retriever = Retriever(store, top_k=4, min_score=0.2)
                retriever.facts(queries[0])  # warm-up: loads the index segment
                brand = [{"brand": f"Brand{i % 50:03d}"} for i in range(n_queries)]
                both = [
                    {"$and": [{"brand": f"Brand{i % 50:03d}"}, {"category": f"Category{i % 20:02d}"}]}
                    for i in range(n_queries)
                ]
                res = {
                    "products": size,
                    "build_s": round(build_s, 1),
                    "insert_per_s": round(size / build_s, 1),
                    "facts_end_to_end": _percentiles(_timed(lambda i: retriever.facts(queries[i]), n_queries)),
                    "store_vector_only": _percentiles(_timed(lambda i: store.query(query_vecs[i], 4), n_queries)),
                    "store_brand_filter": _percentiles(
                        _timed(lambda i: store.query(query_vecs[i], 4, brand[i]), n_queries)
                    ),
                    "store_brand_and_category": _percentiles(
                        _timed(lambda i: store.query(query_vecs[i], 4, both[i]), n_queries)
                    ),
                    "named_sku_lookup": _percentiles(
                        _timed(
                            lambda i: retriever.facts("", ProductHint(sku=f"SYN-{(i * 7919) % size:08d}")), n_queries
                        )
                    ),
                    "embed_query_only": _percentiles(_timed(lambda i: embedder.encode([queries[i]]), n_queries)),
                }
                results.append(res)
                print(f"  {size} products done", file=sys.stderr)
    return {
        "embedder": embedder.model_id,
        "queries": n_queries,
        "top_k": 4,
        "cpu_count": os.cpu_count(),
        "sizes": results,
    }


def render(res: dict[str, Any]) -> str:
    cols = [
        "facts_end_to_end",
        "store_vector_only",
        "store_brand_filter",
        "store_brand_and_category",
        "named_sku_lookup",
        "embed_query_only",
    ]
    head = f"{'products':>9} {'insert/s':>9} " + " ".join(f"{c:>26}" for c in cols)
    lines = [head, " " * 20 + " ".join(f"{'p50 / p95 ms':>26}" for _ in cols)]
    for row in res["sizes"]:
        cells = " ".join(f"{row[c]['p50_ms']:>12.1f} / {row[c]['p95_ms']:<11.1f}" for c in cols)
        lines.append(f"{row['products']:>9} {row['insert_per_s']:>9.0f} {cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k products, 50 queries.")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="Catalog sizes (default 10000 100000).")
    parser.add_argument("--queries", type=int, default=None, help="Queries per measurement (default 200).")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([1000, 10000] if args.quick else [10000, 100000])
    res = run(sizes, args.queries or (50 if args.quick else 200))
    print(render(res))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
