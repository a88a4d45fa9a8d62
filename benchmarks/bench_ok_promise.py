"""Is `ok` a promise? Published right / published wrong / held (reasons counted) on the project's real photos.

    .venv/bin/python -P benchmarks/bench_ok_promise.py --out ok.json                       # lite + template (default)
    .venv/bin/python -P benchmarks/bench_ok_promise.py --refiner vllm --vllm-url http://127.0.0.1:18080/v1 \
        --vllm-model smollm2-135m-instruct --out ok_vllm.json                              # lite + vLLM -> template

Rows: examples/eval/manifest.jsonl (8 bundled photos, alt_text and seo_product with their sku, 2 de-DE) and
extended_manifest.jsonl (11 skimage photos, no sku): 43 rows. Accepted subject words per photo:
examples/relevance/labels.json (committed before any of this was tuned). German captions are judged with the
lexicon's German names for the accepted words.

"Published wrong" = an `ok` caption that names none of the photo's accepted words (nor a person, for photos of
people), states a person on a photo without one, or names a catalog product other than the row's sku.
The script only reads the installed package's public API, so the same file measures any checkout ("before":
run it with main's venv; "after": this branch's).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "examples" / "eval"
LABELS = ROOT / "examples" / "relevance" / "labels.json"
PERSON_WORDS = ("person", "people", "man", "woman", "astronaut", "officer", "personen", "person", "personne", "persona")


def rows() -> list[dict[str, Any]]:
    out = []
    for name in ("manifest.jsonl", "extended_manifest.jsonl"):
        for line in (EVAL / name).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                row["image"] = str((EVAL / row["image"]).resolve())
                out.append(row)
    return out


def _has(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.lower()) + r"(e?s|n)?(?!\w)", text.lower()) is not None


def judge(rec: dict[str, Any], photo: dict[str, Any], titles: dict[str, str], sku: str | None) -> str:
    """'right', 'wrong: why' for an ok record."""
    from caption_agent.refiners.subject import load_lexicon

    text, lang = rec.get("text") or "", rec["locale"].split("-")[0]
    accept = list(photo["accept"])
    if lang != "en":
        nouns = load_lexicon().nouns
        accept = [nouns[w][lang][0] for w in accept if lang in nouns.get(w, {})]
    for other_sku, title in titles.items():
        if other_sku != sku and _has(text, title):
            return f"wrong: names product {other_sku}"
    person = any(_has(text, w) for w in PERSON_WORDS)
    if person and not photo["person"]:
        return "wrong: states a person"
    if any(_has(text, w) for w in accept) or (person and photo["person"]):
        return "right"
    return "wrong: subject not accepted"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--refiner", choices=("template", "vllm"), default="template")
    ap.add_argument("--vllm-url", default="http://127.0.0.1:18080/v1")
    ap.add_argument("--vllm-model", default="smollm2-135m-instruct")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args(argv)
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.config import RetrievalSettings
    from caption_agent.embedders import get_embedder
    from caption_agent.retrieval import CatalogStore, ingest_file

    labels = {p["name"]: p for p in json.loads(LABELS.read_text())["photos"]}
    titles = {
        json.loads(line)["sku"]: json.loads(line)["title"]
        for line in (EVAL / "catalog.jsonl").read_text().splitlines()
        if line.strip()
    }
    tmp = Path(tempfile.mkdtemp(prefix="ok_promise_"))
    embedder = get_embedder()
    with CatalogStore.open(RetrievalSettings(catalog_dir=tmp / "catalog"), embedder, writer=True) as store:
        ingest_file(EVAL / "catalog.jsonl", store)
    refiner: dict[str, Any] = {"backend": "template", "fallbacks": ["draft"]}
    if args.refiner == "vllm":
        refiner = {
            "backend": "vllm",
            "fallbacks": ["template", "draft"],
            "vllm": {"base_url": args.vllm_url, "model": args.vllm_model},
        }
    agent = CaptionAgent(
        AgentConfig.load(retrieval={"catalog_dir": tmp / "catalog"}, refiner=refiner), embedder=embedder
    )
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    records = []
    try:
        for row in rows()[: args.limit]:
            photo = labels[Path(row["image"]).stem]
            res = agent.caption(row["image"], style=row["style"], locale=row["locale"], sku=row.get("sku"))
            rec = res.model_dump(mode="json")
            if res.status == "ok":
                verdict = judge(rec, photo, titles, row.get("sku"))
                counts["published right" if verdict == "right" else "published wrong"] += 1
            elif res.status in ("review", "blocked"):
                verdict = "held"
                counts["held"] += 1
                codes = sorted({r.code for r in res.reasons}) or ["(no reason given)"]
                reasons.update(codes)
            else:
                verdict = "error"
                counts["error"] += 1
            by = res.provenance.refined_by or "-"
            records.append(
                {
                    "row": row,
                    "status": res.status,
                    "text": res.text,
                    "verdict": verdict,
                    "by": by,
                    "reasons": [r.code for r in res.reasons],
                }
            )
            print(
                f"{Path(row['image']).stem:18} {row['style']:11} {row['locale']} {res.status:7} {by:8} "
                f"{verdict:30} {(res.text or '')[:70]!r}",
                file=sys.stderr,
            )
    finally:
        agent.close()
        shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "refiner": args.refiner,
        "rows": len(records),
        "counts": dict(counts),
        "held_reasons": dict(reasons),
        "records": records,
    }
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(json.dumps({k: report[k] for k in ("refiner", "rows", "counts", "held_reasons")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
