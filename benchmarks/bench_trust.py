"""Is `ok` a caption a person would publish? The trust set (benchmarks/trustset/photos.json), per configuration.

Each photo is captioned (alt_text, en-US, no sku) against the sample catalog (examples/catalog.jsonl) and sorted:

* published right: `ok`, and its subject is among the photo's accepted words, with no person stated on a
  person-free photo and no catalog product named (no photo here shows one);
* published wrong: `ok` otherwise (a wrong or missing subject, a person that is not there, a product named);
* held: `review` / `blocked` / error, by reason (``CaptionResult.reasons`` codes, else the holding rules).

The subject is the first basic-level vocabulary name (agent/drafters/data/basic_level.tsv) or person word in the
caption; a caption without one is right only when it contains an accepted word. ``--baseline FILE`` (written by
``--write-baseline`` on today's main) adds "lost": photos held whose accepted words include the subject the lite
drafter named for them on main.

    .venv/bin/python -P benchmarks/bench_trust.py [--config default vllm tiny-vlm] [--split tune|final|all]
        [--limit N] [--out results.json] [--baseline benchmarks/trustset/main_baseline.json]

``vllm`` needs CAPTION_AGENT_TEST_VLLM_URL / CAPTION_AGENT_TEST_VLLM_MODEL (the project's SmolLM2 server);
``tiny-vlm`` builds a tiny random-weight Florence-2 and serves it as the ``florence-2-base`` preset.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "trustset"))
import prepare  # noqa: E402 - the trust set's own loader, beside this file

CATALOG = ROOT / "examples" / "catalog.jsonl"
PERSON_WORDS = (
    "person people man men woman women boy boys girl girls child children player players athlete rider "
    "someone astronaut"
).split()


def _plural_forms(word: str) -> set[str]:
    return {word, word + "s", word + "es", re.sub(r"y$", "ies", word)}


def _has(text: str, phrase: str) -> bool:
    return any(re.search(rf"\b{re.escape(form)}\b", text) for form in _plural_forms(phrase.lower()))


def _vocabulary() -> list[str]:
    from caption_agent.drafters.hedging import hierarchy

    names = [p.split(" ", 1)[1] if p.split(" ", 1)[0] in ("a", "an") else p for p in hierarchy().phrases.values()]
    return sorted(set(names), key=len, reverse=True)


def subject_of(caption: str, vocabulary: Sequence[str]) -> str | None:
    """The first vocabulary name or person word in the caption (by position), or None."""
    text = caption.lower()
    found = []
    for name in [*vocabulary, *PERSON_WORDS]:
        for form in _plural_forms(name):
            m = re.search(rf"\b{re.escape(form)}\b", text)
            if m:
                found.append((m.start(), -len(name), name))
    return min(found)[2] if found else None


def judge(photo: dict[str, Any], caption: str, vocabulary: Sequence[str], names: Sequence[str]) -> str | None:
    """None when a published caption is right; else why it is wrong."""
    text = caption.lower()
    accepted = [w.lower() for w in photo["accepted"]]
    subject = subject_of(caption, vocabulary)
    if photo["people"] == 0 and any(_has(text, w) for w in PERSON_WORDS):
        return "states a person"
    named = [n for n in names if n.lower() in text]
    if named:
        return f"names a catalog product ({named[0]})"
    if subject is None:
        return None if any(_has(text, w) for w in accepted) else "names no subject"
    if subject in PERSON_WORDS:
        return None if photo["people"] else "states a person"
    if any(subject == w or _has(subject, w) or _has(w, subject) for w in accepted):
        return None
    return f"subject {subject!r} is not in the photo"


def _catalog_names() -> list[str]:
    names = set()
    for line in CATALOG.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        names.add(row["title"])
        if row.get("brand"):
            names.add(row["brand"])
    return sorted(names, key=len, reverse=True)


def build_agent(config: str, catalog_dir: Path, workdir: Path) -> Any:
    from caption_agent import AgentConfig, CaptionAgent

    refiner: dict[str, Any] = {}
    drafter: dict[str, Any] = {}
    if config == "vllm":
        url, model = os.environ.get("CAPTION_AGENT_TEST_VLLM_URL"), os.environ.get("CAPTION_AGENT_TEST_VLLM_MODEL")
        if not url or not model:
            raise SystemExit("vllm: set CAPTION_AGENT_TEST_VLLM_URL and CAPTION_AGENT_TEST_VLLM_MODEL")
        refiner = {"backend": "vllm", "vllm": {"base_url": url, "model": model}}
    elif config == "tiny-vlm":
        sys.path.insert(0, str(ROOT / "tests" / "drafters"))
        from preset_models import build_florence2, install_in_hub_cache

        from caption_agent.drafters.presets import get_preset

        preset = get_preset("florence-2-base")
        cache = workdir / "hub"
        install_in_hub_cache(build_florence2(workdir / "florence2"), preset.hub_id, cache, preset.revision)
        drafter = {
            "backend": "transformers",
            "transformers": {"model": "florence-2-base", "cache_dir": str(cache), "max_new_tokens": 12},
        }
    return CaptionAgent(AgentConfig.load(retrieval={"catalog_dir": catalog_dir}, refiner=refiner, drafter=drafter))


def ingest(catalog_dir: Path) -> None:
    from caption_agent.config import RetrievalSettings
    from caption_agent.embedders import get_embedder
    from caption_agent.retrieval import CatalogStore, ingest_file

    with CatalogStore.open(RetrievalSettings(catalog_dir=catalog_dir), get_embedder(), writer=True) as store:
        ingest_file(CATALOG, store)


def run(config: str, photos: list[dict[str, Any]], paths: dict[str, Path], workdir: Path) -> dict[str, Any]:
    vocabulary, names = _vocabulary(), _catalog_names()
    agent = build_agent(config, workdir / "catalog", workdir)
    try:
        from caption_agent.schemas import CaptionRequest

        requests = [CaptionRequest(image=str(paths[p["id"]]), style="alt_text", locale="en-US") for p in photos]
        # One request per call: one photo's failure stays that photo's record.
        results = [agent.caption_batch([request])[0] for request in requests]
    finally:
        agent.close()
    rows, held = [], Counter()
    for photo, result in zip(photos, results):
        row: dict[str, Any] = {"id": photo["id"], "status": result.status, "text": result.text, "draft": result.draft}
        row["lite_subject"] = subject_of(result.draft or "", vocabulary)
        if result.status == "ok":
            row["wrong"] = judge(photo, result.text or "", vocabulary, names)
        else:
            codes = [r.code for r in getattr(result, "reasons", [])] or [
                f"{d.rule}.{d.action}" for d in result.decisions if d.action in ("review", "block")
            ]
            if result.error is not None:
                codes = [f"error.{result.error.type}"]
                row["error"] = f"{result.error.stage}: {result.error.message}"
            row["held"] = sorted(set(codes)) or ["held.unknown"]
            held.update(row["held"])
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    wrong = [r for r in ok if r["wrong"]]
    return {
        "config": config,
        "photos": len(rows),
        "published_right": len(ok) - len(wrong),
        "published_wrong": len(wrong),
        "held": len(rows) - len(ok),
        "held_reasons": dict(held.most_common()),
        "wrong": [(r["id"], r["text"], r["wrong"]) for r in wrong],
        "rows": rows,
    }


def lost(result: dict[str, Any], baseline: dict[str, str | None], photos: dict[str, dict[str, Any]]) -> list[str]:
    """Photos held now whose accepted words include the subject the lite drafter named for them on main."""
    out = []
    for row in result["rows"]:
        subject = baseline.get(row["id"])
        accepted = [w.lower() for w in photos[row["id"]]["accepted"]]
        if row["status"] != "ok" and subject and any(subject == w or _has(subject, w) for w in accepted):
            out.append(row["id"])
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=["default"], choices=["default", "vllm", "tiny-vlm"])
    parser.add_argument("--split", choices=["tune", "final", "all"], default="all")
    parser.add_argument("--limit", type=int, default=0, help="Only the first N photos of the split.")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--baseline", type=Path, default=None, help="main's lite subjects (--write-baseline).")
    parser.add_argument("--write-baseline", type=Path, default=None, help="Write the default run's lite subjects.")
    args = parser.parse_args(argv)
    photos = [p for p in prepare.load_manifest() if args.split in ("all", p["split"])]
    photos = photos[: args.limit] if args.limit else photos
    paths = prepare.prepare(photos)
    by_id = {p["id"]: p for p in photos}
    report: dict[str, Any] = {"split": args.split, "results": []}
    with tempfile.TemporaryDirectory(prefix="bench_trust_") as tmp:
        workdir = Path(tmp)
        ingest(workdir / "catalog")
        for config in args.config:
            result = run(config, photos, paths, workdir)
            if config == "default" and args.write_baseline:
                subjects = {r["id"]: r["lite_subject"] for r in result["rows"]}
                args.write_baseline.write_text(json.dumps(subjects, indent=1) + "\n", encoding="utf-8")
            if args.baseline:
                result["lost"] = lost(result, json.loads(args.baseline.read_text(encoding="utf-8")), by_id)
            report["results"].append(result)
    for r in report["results"]:
        extra = f", lost {len(r['lost'])}" if "lost" in r else ""
        print(
            f"{r['config']:9} photos {r['photos']}: published right {r['published_right']}, published wrong "
            f"{r['published_wrong']}, held {r['held']} {r['held_reasons']}{extra}"
        )
        for item in r["wrong"]:
            print("   wrong:", item)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
