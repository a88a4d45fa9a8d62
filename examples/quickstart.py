"""Caption the sample photos with the offline defaults and print a readable summary plus JSONL.

    python examples/quickstart.py --catalog var/catalog [--out results.jsonl]

Run `caption-agent ingest examples/catalog.jsonl --catalog var/catalog` first (`make demo` does both).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from caption_agent import AgentConfig, CaptionAgent, CaptionRequest, ProductHint

HERE = Path(__file__).resolve().parent

# (image, style, product hint) — the espresso photo is tied to a catalog product to show grounding.
REQUESTS = [
    ("coffee.jpg", "seo_product", ProductHint(sku="MUG-001")),
    ("coffee.jpg", "alt_text", ProductHint()),
    ("chelsea.jpg", "alt_text", ProductHint()),
    ("motorcycle.jpg", "alt_text", ProductHint()),
    ("flower.jpg", "alt_text", ProductHint()),
    ("rocket.jpg", "alt_text", ProductHint()),
    ("china.jpg", "alt_text", ProductHint()),
    ("astronaut.jpg", "alt_text", ProductHint()),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=None, help="Embedded Chroma folder (from `ingest`).")
    parser.add_argument("--out", type=Path, default=None, help="Also write results as JSONL here.")
    args = parser.parse_args(argv)

    agent = CaptionAgent(AgentConfig.load(retrieval={"catalog_dir": args.catalog}))
    requests = [
        CaptionRequest(image=HERE / "images" / name, style=style, hint=hint, key=f"{name}:{style}")
        for name, style, hint in REQUESTS
    ]
    start = time.perf_counter()
    results = agent.caption_batch(requests)
    elapsed = time.perf_counter() - start
    lines = [r.model_dump_json(exclude_none=True) for r in results]
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for r in results:
        facts = ", ".join(f.id for f in r.facts[:3]) or "-"
        print(
            f"[{r.status:7s}] {r.key:28s} conf={r.confidence or 0:.2f} {r.text!r}\n"
            f"          draft={r.draft!r} facts={facts} decision={r.decision}"
        )
    print(f"\n{len(results)} captions in {elapsed:.1f}s (models included); JSONL: {args.out or 'not written'}")
    agent.close()
    return 0 if all(r.status != "error" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
