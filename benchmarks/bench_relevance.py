"""Hedged drafts and the relevance gate, measured on the labelled relevance set (issue 15, points 3 and 4).

For every photo in ``examples/relevance/labels.json`` (the 8 bundled photos + 12 skimage.data photos):

1. drafts before (the top ImageNet leaf, "An Egyptian cat.") and after (the hedged lite drafter, ranked by the
   default consensus ranker), each judged against the photo's accepted names (labels written before tuning);
2. similarity retrieval over ``examples/relevance/catalog.jsonl`` (301 products), top ``k``, for the after-draft
   and the before-draft; every returned (photo, product) pair is relevant iff the product's category is one the
   labels list for the photo;
3. the gate: category check (the after-draft's hedged category or an ancestor; for a before-draft, the names
   its text contains) and a score threshold calibrated on the after-draft pairs of the 'tune' photos (middle of
   the max-F0.5 plateau: a wrong product costs more than a missing one), reported on 'tune', 'holdout' and all,
   with no gate, category only and score only beside it.

    OMP_NUM_THREADS=1 python -P benchmarks/bench_relevance.py [--k 10] [--out report.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "examples" / "relevance" / "labels.json"
CATALOG = ROOT / "examples" / "relevance" / "catalog.jsonl"


def load_photo(source: str) -> bytes:
    """Image bytes of a labels-file source: a repo path or ``skimage:<name>``."""
    if not source.startswith("skimage:"):
        return (ROOT / source).read_bytes()
    import skimage.data
    from PIL import Image

    array = getattr(skimage.data, source.split(":", 1)[1])()
    buf = io.BytesIO()
    Image.fromarray(array[0] if isinstance(array, tuple) else array).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def before_draft(labels: list[tuple[str, float]], faces: int | None) -> tuple[str, str]:
    """The first draft of the previous lite drafter: the top leaf label, after the people when faces were seen."""
    label = labels[0][0]
    thing = f"{'an' if label[:1].lower() in 'aeiou' else 'a'} {label}"
    people = {1: "a person", 2: "two people"}.get(faces or 0, "a group of people") if faces else ""
    text = f"{people} with {thing}" if people else thing
    return text[0].upper() + text[1:] + ".", label.lower()


def acceptable(photo: dict[str, Any], named: str, people: bool) -> bool:
    """A draft is acceptable when its people match the photo's and what it names (or nothing) is accepted."""
    if people != photo["person"]:
        return False
    return named in photo["accept"] if named else bool(photo["none_ok"])


def _named(phrase: str) -> str:
    head, _, rest = phrase.partition(" ")
    return rest if head in ("a", "an") else phrase


def draft_all(photos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from caption_agent.drafters.lite import LiteDrafter
    from caption_agent.embedders import get_embedder
    from caption_agent.images import load_image
    from caption_agent.policies import PolicyEngine
    from caption_agent.ranking import ConsensusRanker

    drafter, policy = LiteDrafter(), PolicyEngine.load()
    ranker = ConsensusRanker(get_embedder(None), drafter_weight=0.5)
    rows = []
    for photo in photos:
        image, info = load_image(load_photo(photo["source"]))
        _, faces = policy.screen_image(image, info, "alt_text")
        info = info.model_copy(update={"faces": faces})
        draft = drafter.draft([image], [info], n=5)[0]
        ranked, _ = ranker.rank(draft.candidates, image)
        subject = draft.subject
        assert subject is not None
        before, before_named = before_draft(draft.labels, faces)
        after_named = ", ".join(subject.context) if subject.people else subject.name
        named = [_named(x) for x in subject.context] if subject.people else [_named(subject.name)] * bool(subject.name)
        rows.append(
            {
                "name": photo["name"],
                "split": photo["split"],
                "faces": int(faces) if faces is not None else None,
                "before": before,
                "before_ok": acceptable(photo, before_named, bool(faces)),
                "after": ranked[0].text,
                "after_named": after_named,
                "after_ok": all(acceptable(photo, n, bool(faces)) for n in named or [""]),
                "subject": subject.model_dump(),
            }
        )
    return rows


def retrieve(rows: list[dict[str, Any]], photos: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Every (photo, product) pair similarity search returns for the photo's before- and after-draft. The gate
    judges an after-draft by its structured subject and a before-draft by the names in its text (what it does
    for a drafter without a subject)."""
    from caption_agent.config import RetrievalSettings
    from caption_agent.drafters.hedging import synsets_in_text
    from caption_agent.embedders import get_embedder
    from caption_agent.retrieval import CatalogStore, Retriever, ingest_file
    from caption_agent.retrieval.relevance import category_synsets

    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = RetrievalSettings(catalog_dir=Path(tmp) / "catalog")
        embedder = get_embedder(None)
        store = CatalogStore.open(settings, embedder, writer=True)
        try:
            ingest_file(CATALOG, store)
            retriever = Retriever(store, top_k=k, min_score=settings.min_score)
            queries = [(row[kind], None) for kind in ("after", "before") for row in rows]
            found = retriever.search_many(queries, "en-US")
        finally:
            store.close()
    n = len(rows)
    for i, matches in enumerate(found):
        kind, row, photo = ("after", "before")[i // n], rows[i % n], photos[i % n]
        relevant = [c.lower() for c in photo["relevant"]]
        synsets = row["subject"]["synsets"] if kind == "after" else synsets_in_text(row["before"])
        for rank, m in enumerate(matches):
            category = m.product.category or ""
            is_rel = any(category.lower() == c or category.lower().startswith(c + " >") for c in relevant)
            pairs.append(
                {
                    "photo": row["name"],
                    "draft": kind,
                    "split": row["split"],
                    "rank": rank,
                    "sku": m.product.sku,
                    "category": category,
                    "score": round(m.score, 4),
                    "relevant": is_rel,
                    "category_ok": bool(category_synsets(category) & set(synsets)),
                }
            )
    return pairs


SPLITS = ("after:tune", "after:holdout", "after:all", "before:all")


def prf(pairs: list[dict[str, Any]], keep: Sequence[bool]) -> dict[str, float]:
    tp = sum(p["relevant"] and kept for p, kept in zip(pairs, keep))
    kept_n, rel_n = sum(keep), sum(p["relevant"] for p in pairs)
    precision = tp / kept_n if kept_n else 1.0
    recall = tp / rel_n if rel_n else 1.0
    f05 = 1.25 * precision * recall / (0.25 * precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f0.5": round(f05, 3),
            "kept": kept_n, "relevant": rel_n, "pairs": len(pairs)}  # fmt: skip


def evaluate(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    # Calibrated on what the default pipeline sends: after-drafts (structured subjects) of the tune photos.
    tune = [p for p in pairs if p["split"] == "tune" and p["draft"] == "after"]
    grid = [round(float(t), 2) for t in np.arange(0.0, 0.81, 0.01)]
    f05 = {t: prf(tune, [p["category_ok"] and p["score"] >= t for p in tune])["f0.5"] for t in grid}
    plateau = [t for t in grid if f05[t] == max(f05.values())]
    # The middle of the best plateau: the widest margin on both sides of the tune pairs it separates.
    best = plateau[len(plateau) // 2]
    out: dict[str, Any] = {"threshold": best, "plateau": [plateau[0], plateau[-1]]}
    for split in SPLITS:
        kind, _, part = split.partition(":")
        sel = [p for p in pairs if p["draft"] == kind and part in ("all", p["split"])]
        out[split] = {
            "no_gate": prf(sel, [True] * len(sel)),
            "category_only": prf(sel, [p["category_ok"] for p in sel]),
            "score_only": prf(sel, [p["score"] >= best for p in sel]),
            "gate": prf(sel, [p["category_ok"] and p["score"] >= best for p in sel]),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10, help="products retrieved per photo")
    parser.add_argument("--out", type=Path, help="write the full report (drafts, pairs, metrics) as JSON")
    args = parser.parse_args(argv)
    photos = json.loads(LABELS.read_text(encoding="utf-8"))["photos"]
    rows = draft_all(photos)
    pairs = retrieve(rows, photos, args.k)
    metrics = evaluate(rows, pairs)
    for row in rows:
        print(f"{row['name']:18} {row['split']:7} faces={row['faces']}  before {'OK ' if row['before_ok'] else 'no '}"
              f"{row['before']!r:42} after {'OK ' if row['after_ok'] else 'no '}{row['after']!r}")  # fmt: skip
    for split in ("tune", "holdout"):
        sel = [r for r in rows if r["split"] == split]
        print(f"acceptable drafts ({split}): before {sum(r['before_ok'] for r in sel)}/{len(sel)}, "
              f"after {sum(r['after_ok'] for r in sel)}/{len(sel)}")  # fmt: skip
    print(f"acceptable drafts (all): before {sum(r['before_ok'] for r in rows)}/{len(rows)}, "
          f"after {sum(r['after_ok'] for r in rows)}/{len(rows)}")  # fmt: skip
    lo, hi = metrics["plateau"]
    print(f"gate threshold (middle of the max-F0.5 plateau {lo}..{hi} on tune, top-{args.k}): {metrics['threshold']}")
    for split in SPLITS:
        for name, m in metrics[split].items():
            print(f"  {split:13} {name:13} P={m['precision']:.3f} R={m['recall']:.3f} F0.5={m['f0.5']:.3f} "
                  f"kept={m['kept']}/{m['pairs']} relevant={m['relevant']}")  # fmt: skip
    if args.out:
        report = {"k": args.k, "drafts": rows, "pairs": pairs, "metrics": metrics}
        args.out.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
