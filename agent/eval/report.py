"""``evaluate``: every caption metric over one results file, as one JSON-able report, and its text table.

COCO metrics are computed per group of results written for one (style, locale), over the images that have a
caption, and only for locales in the references' language (scoring German captions against English
references measures nothing). Coverage says how many reference images each group captioned.
"""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path
from typing import Any

from agent.eval.coco import METRICS, coco_scores_groups
from agent.eval.data import EvalItem, References, load_references, load_results

_CHANGING = ("redact", "regenerate", "fallback", "block")


def evaluate(results: Path | str, references: Path | str, *, catalog: Path | str | None = None,
             clip_model: str | None = None, images_dir: Path | None = None, policy: Path | str | None = None,
             style: str | None = None, locale: str = "en-US", per_image: bool = False) -> dict[str, Any]:
    """The evaluation report of ``results`` against COCO ``references`` (see docs/eval.md for each metric)."""
    from agent.eval.compliance import compliance
    from agent.eval.grounding import grounding, load_catalog_facts
    from agent.locales import language_code
    from policies import PolicyEngine

    refs = load_references(references)
    items = load_results(results, refs, style=style, locale=locale)
    engine = PolicyEngine.load(policy)
    groups: dict[str, list[EvalItem]] = {}
    for item in items:
        if item.image_id is not None and item.text:
            groups.setdefault(f"{item.style or '-'}/{item.locale}", []).append(item)
    captions: dict[str, Any] = {}
    scored: dict[str, dict[str, str]] = {}
    for name, members in sorted(groups.items()):
        if language_code(members[0].locale) != refs.language:
            captions[name] = {"skipped": f"locale {members[0].locale} is not the references' language "
                                         f"({refs.language})", "captions": len(members)}
            continue
        scored[name], captions[name] = _one_per_image(members)
    if scored:
        all_scores = coco_scores_groups({i: r.captions for i, r in refs.images.items()}, scored)
        for name, (overall, images) in all_scores.items():
            captions[name].update(metrics={k: round(v, 4) for k, v in overall.items()},
                                  coverage=round(len(scored[name]) / len(refs.images), 4))
            if per_image:
                captions[name]["per_image"] = {i: {"caption": scored[name][i], **{k: round(v, 4) for k, v in
                                                                                   s.items()}}
                                               for i, s in images.items()}
    report: dict[str, Any] = {
        "results": str(results), "references": str(references), "reference_images": len(refs.images),
        "reference_captions": sum(len(r.captions) for r in refs.images.values()),
        "records": len(items), "unmatched_records": sum(i.image_id is None for i in items),
        "status": dict(Counter(i.status for i in items)),
        "captions": captions,
        "compliance": compliance(items, engine),
        "grounding": grounding(items, refs, engine, load_catalog_facts(catalog) if catalog else None),
        "moderation": moderation(items),
        "clip_s": None,
        "policy": {"version": engine.version, "hash": engine.hash},
        "tools": _tools(),
    }
    if clip_model:
        from agent.eval.clip_score import clip_scores

        report["clip_s"] = clip_scores(items, refs, clip_model, images_dir)
    return report


def _one_per_image(members: list[EvalItem]) -> tuple[dict[str, str], dict[str, Any]]:
    """COCO scores one caption per image: the first result for an image counts, later ones are counted."""
    chosen: dict[str, str] = {}
    for item in members:
        chosen.setdefault(item.image_id, item.text)
    return chosen, {"captions": len(chosen), "duplicates_ignored": len(members) - len(chosen)}


def moderation(items: list[EvalItem]) -> dict[str, Any]:
    """Share of project records whose caption moderation changed: a caption rule fixed, regenerated, replaced
    (fallback to the draft) or blocked it. Input-side decisions (facts cleaned before the prompt) do not count."""
    records = [i.record for i in items if i.record and i.status != "error"]
    changed, by_rule = 0, Counter()
    for rec in records:
        rules = {d.get("rule") for d in rec.get("decisions", [])
                 if d.get("action") in _CHANGING and "source" not in (d.get("details") or {})}
        attempts = (rec.get("provenance") or {}).get("refine_attempts", 0)
        if rules or rec.get("decision") in ("redact", "fallback", "block") or attempts > 1:
            changed += 1
            by_rule.update(r for r in rules if r)
    return {"records": len(records), "changed": changed,
            "changed_share": round(changed / len(records), 4) if records else None,
            "by_rule": dict(by_rule.most_common())}


def _tools() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("pycocoevalcap", "langdetect", "caption-agent"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_table(report: dict[str, Any]) -> str:
    """The report as fixed-width text tables (what `caption-agent eval captions` prints)."""
    lines = [f"{report['records']} records, {report['reference_images']} reference images "
             f"({report['reference_captions']} reference captions), {report['unmatched_records']} unmatched; "
             f"status {report['status']}", ""]
    head = f"{'group (style/locale)':28s}{'n':>4s}" + "".join(f"{m:>9s}" for m in METRICS)
    lines += ["Caption metrics (pycocoevalcap, corpus level)", head, "-" * len(head)]
    for name, row in report["captions"].items():
        if "skipped" in row:
            lines.append(f"{name:28s}{row['captions']:>4d}  skipped: {row['skipped']}")
            continue
        lines.append(f"{name:28s}{row['captions']:>4d}" + "".join(f"{row['metrics'][m]:>9.3f}" for m in METRICS))
    clip = report.get("clip_s")
    lines.append("")
    lines.append(f"CLIP-S (w={clip['w']:g}, {clip['model']}): {clip['mean']:.4f} over {clip['captions']} captions, "
                 f"{clip['truncated_over_77_tokens']} truncated at 77 tokens" if clip else
                 "CLIP-S: not computed (no CLIP model configured: --clip-model or ranker.clip_model)")
    lines += ["", "Compliance per preset", f"{'preset':20s}{'n':>4s}{'length ok':>11s}{'chars min/med/max':>19s}"
              f"{'language ok':>13s}  language counts", "-" * 90]
    for name, row in report["compliance"].items():
        c = row["chars"]
        lines.append(f"{name:20s}{row['captions']:>4d}{_fmt(row['length_compliance']):>11s}"
                     f"{c['min']:>7d}/{c['median']:>4d}/{c['max']:>4d}    {_fmt(row['language_compliance']):>13s}"
                     f"  {row['language']}")
    g, m = report["grounding"], report["moderation"]
    lines += ["", f"Grounding vs catalog: precision {_fmt(g['precision'])} ({g['supported']}/{g['claims']} claims), "
              f"recall {_fmt(g['recall'])} ({g['mentioned']}/{g['attributes']} attributes), "
              f"{g['skipped_no_product']} caption(s) without a product",
              f"Moderation changed {m['changed']}/{m['records']} captions (share {_fmt(m['changed_share'])}); "
              f"by rule {m['by_rule']}"]
    return "\n".join(lines)
