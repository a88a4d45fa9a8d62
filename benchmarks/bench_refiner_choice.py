"""Which offline refiner should be the default? none / local / template / local->template, measured on the
shipped eval set (examples/eval: 8 photos, 18 rows) extended with 11 further real photos that ship offline
(examples/eval/extended.json + extended_manifest.jsonl: 25 rows), in one run (issue 15, point 5).

    OMP_NUM_THREADS=1 .venv/bin/python -P benchmarks/bench_refiner_choice.py --out OUT.json [--keep DIR]

Configurations (the chain ``refiner.backend`` + ``refiner.fallbacks``; every other setting is the default,
including the default policy and the local refiner's default sampling temperature, seeded per row):
  none            backend none                                  (the moderated ranked draft)
  local           backend local,    fallbacks [draft]
  template        backend template, fallbacks [draft]
  local->template backend local,    fallbacks [template, draft] (the shipped default chain)

All configurations share one loaded drafter, embedder, catalog store and SmolLM2; models are loaded and warmed
before timing. Rows are interleaved: each manifest row is captioned by every configuration in turn (the order
rotates per row), each as a one-row `run_caption_job`, so load from other processes falls on all alike.
Wall time per caption = that job's wall time; per stage = the records' ``provenance.timings_ms``.

Metrics per configuration: `caption_agent.eval.report.evaluate` on the merged references (BLEU-4, METEOR,
ROUGE-L, CIDEr per style/locale, English only), grounding precision/recall against the eval catalog, the share of
records per status (ok / review / block / error) per style/locale, how many records the chain answered with each
link, and "subject": the share of English captions that name a category accepted for the photo in
examples/relevance/labels.json (committed before this benchmark; person photos also accept person words).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EVAL = ROOT / "examples" / "eval"
LABELS = ROOT / "examples" / "relevance" / "labels.json"
CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"backend": "none", "fallbacks": ["template", "draft"]},
    "local": {"backend": "local", "fallbacks": ["draft"]},
    "template": {"backend": "template", "fallbacks": ["draft"]},
    "local->template": {"backend": "local", "fallbacks": ["template", "draft"]},
}
PERSON_WORDS = ("person", "people", "man", "woman", "astronaut", "photographer", "officer")


def merged_references(tmp: Path) -> Path:
    """references.json (ids 1-8) + extended.json (ids 9-19) as one COCO file whose file names resolve."""
    base = json.loads((EVAL / "references.json").read_text())
    ext = json.loads((EVAL / "extended.json").read_text())
    for img in base["images"]:
        img["file_name"] = str((EVAL / base["info"]["image_dir"] / img["file_name"]).resolve())
    for img in ext["images"]:
        img["file_name"] = str((EVAL / ext["info"]["image_dir"] / img["file_name"]).resolve())
    base["images"] += ext["images"]
    base["annotations"] += ext["annotations"]
    base["info"]["image_dir"] = ""
    path = tmp / "references.json"
    path.write_text(json.dumps(base))
    return path


def manifest_rows() -> list[dict[str, Any]]:
    rows = []
    for name in ("manifest.jsonl", "extended_manifest.jsonl"):
        for line in (EVAL / name).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                row["image"] = str((EVAL / row["image"]).resolve())
                rows.append(row)
    return rows


def photo_labels(refs_path: Path) -> dict[str, dict[str, Any]]:
    """reference image id -> its labels.json entry (by file stem)."""
    labels = {p["name"]: p for p in json.loads(LABELS.read_text())["photos"]}
    refs = json.loads(refs_path.read_text())
    return {
        str(i["id"]): labels[Path(i["file_name"]).stem] for i in refs["images"] if Path(i["file_name"]).stem in labels
    }


def names_accepted(caption: str, photo: dict[str, Any]) -> bool:
    words = list(photo["accept"]) + (list(PERSON_WORDS) if photo["person"] else [])
    text = caption.lower()
    return any(re.search(r"(?<!\w)" + re.escape(w) + r"(e?s)?(?!\w)", text) for w in words)


def build_agents(catalog_dir: Path, embedder: Any, names: list[str]) -> dict[str, Any]:
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.drafters.lite import LiteDrafter
    from caption_agent.refiners import REFINERS
    from caption_agent.refiners.chain import RefinerChain

    drafter = LiteDrafter()
    base_cfg = AgentConfig.load(retrieval={"catalog_dir": catalog_dir})
    built = {
        link: REFINERS.build(link, base_cfg.refiner.section(link))
        for link in ("local", "template")
        if any(link in name.split("->") for name in names)
    }  # one instance of each link, shared by every chain that holds it
    links = {name: [built[link] for link in name.split("->") if link != "none"] for name in names}
    agents: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    for name in names:
        cfg = AgentConfig.load(retrieval={"catalog_dir": catalog_dir}, refiner=CONFIGS[name])
        agent = CaptionAgent(
            cfg, drafter=drafter, embedder=embedder, refiner=RefinerChain(links=links[name], draft=True), **shared
        )
        if not shared:  # one catalog store, ranker and policy engine for all
            shared = {"retriever": agent.retriever, "ranker": agent.ranker, "policy": agent.policy}
        agents[name] = agent
    return agents


def caption_row(agent: Any, row: dict[str, Any], work: Path, tag: str, seed: int) -> tuple[dict[str, Any], float]:
    import torch

    from caption_agent.jobs.caption_job import CaptionJobOptions, run_caption_job

    manifest = work / f"{tag}.jsonl"
    out = work / f"{tag}.out.jsonl"
    manifest.write_text(json.dumps(row) + "\n")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    run_caption_job(manifest, CaptionJobOptions(out=out), agent=agent)
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(records) == 1, (tag, len(records))
    return records[0], wall


def link_of(rec: dict[str, Any]) -> str:
    """Which link wrote the published caption (from provenance), for counting."""
    prov = rec.get("provenance") or {}
    if not rec.get("text"):
        return f"no text ({rec.get('status')})"
    for key in ("refiner_link", "refined_by", "link"):
        if prov.get(key):
            return str(prov[key])
    return "draft" if prov.get("refiner") in (None, "none", "") else f"?{prov.get('refiner')}"


def summarize(name: str, recs: list[dict[str, Any]], walls: list[float], report: dict[str, Any], lab: dict) -> dict:
    groups: dict[str, Counter] = defaultdict(Counter)
    stage_ms: dict[str, list[float]] = defaultdict(list)
    subject = [0, 0]
    by_link, echo, verbatim, attempts = Counter(), 0, 0, []
    for rec in recs:
        groups[f"{rec.get('style')}/{rec.get('locale')}"][rec.get("status")] += 1
        groups["all"][rec.get("status")] += 1
        for stage, ms in ((rec.get("provenance") or {}).get("timings_ms") or {}).items():
            stage_ms[stage].append(ms)
        by_link[link_of(rec)] += 1
        text = (rec.get("text") or "").strip().lower()
        echo += bool(text) and text == (rec.get("draft") or "").strip().lower()
        verbatim += bool(text) and any(
            f.get("field") in ("title", "description") and len(f.get("text", "")) >= 12 and f["text"].lower() in text
            for f in rec.get("facts") or []
        )
        attempts.append((rec.get("provenance") or {}).get("refine_attempts", 0))
        photo = lab.get(str(rec.get("id")))
        if photo and rec.get("text") and str(rec.get("locale", "")).startswith("en"):
            subject[0] += names_accepted(rec["text"], photo)
            subject[1] += 1
    return {
        "config": name,
        "status": {g: dict(c) for g, c in sorted(groups.items())},
        "ok_share": {g: round(c["ok"] / sum(c.values()), 3) for g, c in sorted(groups.items())},
        "wall_s": {
            "mean": round(statistics.mean(walls), 3),
            "median": round(statistics.median(walls), 3),
            "max": round(max(walls), 3),
            "total": round(sum(walls), 2),
        },
        "stage_ms_mean": {s: round(statistics.mean(v), 1) for s, v in sorted(stage_ms.items())},
        "subject_named": {"hits": subject[0], "captions": subject[1]},
        "written_by": dict(by_link),
        "text_equals_draft": echo,
        "contains_catalog_title_or_description": verbatim,
        "refine_attempts_mean": round(statistics.mean(attempts), 2) if attempts else None,
        "captions": {g: r.get("metrics") for g, r in report["captions"].items() if "metrics" in r},
        "coverage": {g: r.get("coverage") for g, r in report["captions"].items() if "metrics" in r},
        "grounding": {
            k: report["grounding"][k]
            for k in (
                "precision",
                "recall",
                "claims",
                "supported",
                "attributes",
                "mentioned",
                "captions",
                "skipped_no_product",
            )
        },
        "grounding_unsupported": report["grounding"].get("unsupported_examples"),
        "moderation": report["moderation"],
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    def f(v: Any, d: int = 3) -> str:
        return "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))

    lines = [
        "| config | preset | BLEU-4 | METEOR | ROUGE-L | CIDEr | ok | review | block | error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for g in sorted(r["status"]):
            if g == "all":
                continue
            m = r["captions"].get(g) or {}
            st = r["status"][g]
            n = sum(st.values())
            lines.append(
                f"| {name} | {g} | {f(m.get('Bleu_4'))} | {f(m.get('METEOR'))} | {f(m.get('ROUGE_L'))} | "
                f"{f(m.get('CIDEr'))} | {st.get('ok', 0)}/{n} | {st.get('review', 0)} | {st.get('block', 0)} | "
                f"{st.get('error', 0)} |"
            )
    lines += [
        "",
        "| config | ok share (all rows) | grounding P | grounding R (mentioned/attrs) | claims (supported) | "
        "names accepted subject (en) | wall s/caption mean (median, max) | refine ms mean | moderation changed | "
        "written by | = draft | catalog title/desc verbatim |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        g, w, s = r["grounding"], r["wall_s"], r["subject_named"]
        refine = r["stage_ms_mean"].get("refine")
        lines.append(
            f"| {name} | {f(r['ok_share']['all'])} | {f(g['precision'])} | {f(g['recall'])} "
            f"({g['mentioned']}/{g['attributes']}) | {g['claims']} ({g['supported']}) | {s['hits']}/{s['captions']} | "
            f"{f(w['mean'], 2)} ({f(w['median'], 2)}, {f(w['max'], 2)}) | {f(refine, 0)} | "
            f"{r['moderation']['changed']}/{r['moderation']['records']} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(r['written_by'].items()))} | {r['text_equals_draft']} | "
            f"{r['contains_catalog_title_or_description']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON results file")
    ap.add_argument("--keep", type=Path, help="also keep the results JSONL of each configuration in this folder")
    ap.add_argument("--limit", type=int, help="only the first N manifest rows (smoke test)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    args = ap.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]
    if not names or set(names) - set(CONFIGS):
        ap.error(f"--configs: choose from {', '.join(CONFIGS)}")
    from caption_agent.config import RetrievalSettings
    from caption_agent.eval.report import evaluate
    from caption_agent.retrieval import CatalogStore, ingest_file

    tmp = Path(tempfile.mkdtemp(prefix="refiner_choice_"))
    work = tmp / "work"
    work.mkdir()
    refs = merged_references(tmp)
    rows = manifest_rows()[: args.limit]
    lab = photo_labels(refs)
    t_load = time.perf_counter()
    from caption_agent.embedders import get_embedder

    embedder = get_embedder()
    with CatalogStore.open(RetrievalSettings(catalog_dir=tmp / "catalog"), embedder, writer=True) as store:
        ingest_file(EVAL / "catalog.jsonl", store)
    agents = build_agents(tmp / "catalog", embedder, names)
    agents = {n: agents[n] for n in names}
    for n, agent in agents.items():  # warm every stage (models, tokenizers, caches) outside the timing
        caption_row(agent, dict(rows[0], id="warmup"), work, f"warm-{n.replace('>', '')}", 0)
    load_s = time.perf_counter() - t_load
    print(f"loaded and warmed in {load_s:.1f} s; {len(rows)} rows x {len(names)} configurations", file=sys.stderr)
    recs: dict[str, list] = {n: [] for n in names}
    walls: dict[str, list] = {n: [] for n in names}
    for i, row in enumerate(rows):
        order = names[i % len(names) :] + names[: i % len(names)]
        for n in order:
            seed = 1000 * i + 17
            rec, wall = caption_row(agents[n], row, work, f"{i}-{n.replace('>', '')}", seed)
            recs[n].append(rec)
            walls[n].append(wall)
        print(
            f"row {i + 1}/{len(rows)} " + "  ".join(f"{n}: {recs[n][-1].get('status')}" for n in names), file=sys.stderr
        )
    out_dir = args.keep or work
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for n in names:
        path = out_dir / f"results-{n.replace('->', '-then-')}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs[n]))
        report = evaluate(path, refs, catalog=EVAL / "catalog.jsonl")
        results[n] = summarize(n, recs[n], walls[n], report, lab)
        results[n]["captions_text"] = [
            {
                "id": r.get("id"),
                "style": r.get("style"),
                "locale": r.get("locale"),
                "status": r.get("status"),
                "decision": r.get("decision"),
                "text": r.get("text"),
                "link": link_of(r),
            }
            for r in recs[n]
        ]
    for agent in agents.values():
        agent.close()
    doc = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python -P benchmarks/bench_refiner_choice.py "
        + " ".join(argv or sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "rows": len(rows),
        "load_and_warm_s": round(load_s, 1),
        "configs": {n: CONFIGS[n] for n in names},
        "results": results,
    }
    args.out.write_text(json.dumps(doc, indent=1, default=str))
    shutil.rmtree(tmp, ignore_errors=True)  # the catalog store and per-row files; --keep holds the results
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
