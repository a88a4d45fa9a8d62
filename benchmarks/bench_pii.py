"""PII catch and false-positive counts per kind on the policy corpus (issue 16.6), with the real engine.

A case is a positive of kind K when the pii rule is expected to fire and its id reads ``pii-<in|out>-K-...``; it
is *caught* when the rule found kind K and the case's expectations hold (the raw PII is gone from the text),
*masked* when the rule fired and the expectations hold whatever kind it named. Every other case of the inputs
and output stages is a negative: a false positive of kind K when the rule found K in it. Negatives are counted
apart for the product-data set (ids ``pii-neg-product-...``) and for the rest of the corpus.

    .venv/bin/python -P benchmarks/bench_pii.py [--corpus tests/policies/corpus] [--policy FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("email", "phone", "url", "card", "address", "iban")
_KIND_IN_ID = re.compile(r"^pii-(?:in|out)-([a-z]+)")


def measure(corpus: Path, policy: Path | None = None) -> dict[str, Any]:
    """Counts per kind: positives, caught, masked; false positives on existing and on product-data negatives."""
    from caption_agent.eval.policies import load_corpus, run_case
    from caption_agent.policies.engine import PolicyEngine

    engine = PolicyEngine.load(policy)
    rows: dict[str, dict[str, Any]] = {
        k: {"positives": 0, "caught": 0, "masked": 0, "fp_existing": [], "fp_product": []} for k in KINDS
    }
    negatives = {"existing": 0, "product": 0}
    misses: list[str] = []
    for case in load_corpus(corpus):
        if case.stage == "image" or case.render is not None or case.id.startswith("markup-"):
            continue  # no text of its own (images, OCR renders); markup cases hide URLs in links and scripts
        result = run_case(engine, case)
        found = {
            kind
            for d in result.decisions
            if d.rule == "pii" and d.action != "allow" and d.details.get("pass") != "draft"
            for kind in d.details.get("found", [])
        }
        if "pii" in case.fires:
            match = _KIND_IN_ID.match(case.id)
            kind = match.group(1) if match and match.group(1) in KINDS else None
            if kind is None:
                continue
            row = rows[kind]
            row["positives"] += 1
            ok = "pii" in result.fired and not result.problems
            row["masked"] += ok
            row["caught"] += ok and kind in found
            if not (ok and kind in found):
                misses.append(f"{case.id}: found {sorted(found)} {result.problems}")
            continue
        group = "product" if case.id.startswith("pii-neg-product") else "existing"
        negatives[group] += 1
        for kind in found & set(KINDS):
            rows[kind][f"fp_{group}"].append(case.id)
    return {"kinds": rows, "negatives": negatives, "misses": misses}


def table(report: dict[str, Any]) -> str:
    neg = report["negatives"]
    lines = [f"{'kind':8s} {'caught':>8s} {'masked':>8s} {'FP existing':>12s} {'FP product':>11s}"]
    for kind, r in report["kinds"].items():
        pos = r["positives"]
        lines.append(
            f"{kind:8s} {r['caught']:>3d}/{pos:<4d} {r['masked']:>3d}/{pos:<4d} "
            f"{len(r['fp_existing']):>5d}/{neg['existing']:<6d} {len(r['fp_product']):>4d}/{neg['product']:<6d}"
        )
    for kind, r in report["kinds"].items():
        for group in ("fp_existing", "fp_product"):
            if r[group]:
                lines.append(f"  FP {kind} ({group[3:]}): {', '.join(r[group])}")
    lines += [f"  missed: {m}" for m in report["misses"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=ROOT / "tests" / "policies" / "corpus")
    parser.add_argument("--policy", type=Path, default=None, help="policy file (default: the bundled one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the counts as JSON here")
    args = parser.parse_args(argv)
    report = measure(args.corpus, args.policy)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
