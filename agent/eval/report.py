"""``evaluate``: every caption metric over one results file, as one JSON-able report, and its text table;
``compare``: the same for several labelled results files (configurations), side by side.

COCO metrics are computed per group of results written for one (style, locale), over the images that have a
caption, and only for locales in the references' language (scoring German captions against English
references measures nothing). Coverage says how many reference images each group captioned.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from caption_agent.eval.coco import METRICS, coco_scores_groups
from caption_agent.eval.data import EvalInputError, EvalItem, load_references, load_results

_CHANGING = ("redact", "regenerate", "fallback", "block")


def evaluate(
    results: Path | str,
    references: Path | str,
    *,
    catalog: Path | str | None = None,
    clip_model: str | None = None,
    images_dir: Path | None = None,
    policy: Path | str | None = None,
    style: str | None = None,
    locale: str = "en-US",
    per_image: bool = False,
) -> dict[str, Any]:
    """The evaluation report of ``results`` against COCO ``references`` (see docs/eval.md for each metric)."""
    return _evaluate_runs(
        {"": results},
        references,
        catalog=catalog,
        clip_model=clip_model,
        images_dir=images_dir,
        policy=policy,
        style=style,
        locale=locale,
        per_image=per_image,
    )[""]


def compare(runs: Mapping[str, Path | str], references: Path | str, **options: Any) -> dict[str, Any]:
    """Reports of several labelled results files (configurations) against the same references, side by side.

    ``runs`` maps a label to a results file; ``options`` are ``evaluate``'s keywords. Each ``runs[label]`` of
    the answer is exactly the report ``evaluate`` writes for that file; all COCO scores come from one tokenizer
    run and one METEOR process."""
    if len(runs) < 2:
        raise EvalInputError(f"a comparison needs at least two labelled results files, got {len(runs)}.")
    bad = [label for label in runs if not label or not label.strip() or label != label.strip()]
    if bad:
        raise EvalInputError(f"comparison labels must be non-empty without surrounding spaces: {bad!r}.")
    reports = _evaluate_runs(runs, references, **options)
    first = next(iter(reports.values()))
    return {
        "comparison": list(reports),
        "references": str(references),
        "reference_images": first["reference_images"],
        "reference_captions": first["reference_captions"],
        "runs": reports,
    }


def _evaluate_runs(
    runs: Mapping[str, Path | str],
    references: Path | str,
    *,
    catalog: Path | str | None = None,
    clip_model: str | None = None,
    images_dir: Path | None = None,
    policy: Path | str | None = None,
    style: str | None = None,
    locale: str = "en-US",
    per_image: bool = False,
) -> dict[str, dict[str, Any]]:
    from caption_agent.eval.compliance import compliance
    from caption_agent.eval.grounding import grounding, load_catalog_facts
    from caption_agent.policies import PolicyEngine

    refs = load_references(references)
    engine = PolicyEngine.load(policy)
    facts = load_catalog_facts(catalog) if catalog else None
    items = {label: load_results(path, refs, style=style, locale=locale) for label, path in runs.items()}
    captions, scored = _caption_groups(items, refs)
    if scored:
        _add_coco_scores(captions, scored, refs, per_image)
    reports: dict[str, dict[str, Any]] = {}
    for label, run_items in items.items():
        reports[label] = {
            "results": str(runs[label]),
            "references": str(references),
            "reference_images": len(refs.images),
            "reference_captions": sum(len(r.captions) for r in refs.images.values()),
            "records": len(run_items),
            "unmatched_records": sum(i.image_id is None for i in run_items),
            "status": dict(Counter(i.status for i in run_items)),
            "captions": captions[label],
            "compliance": compliance(run_items, engine),
            "grounding": grounding(run_items, refs, engine, facts),
            "moderation": moderation(run_items),
            "clip_s": None,
            "policy": {"version": engine.version, "hash": engine.hash},
            "tools": _tools(),
        }
        if clip_model:
            from caption_agent.eval.clip_score import clip_scores

            reports[label]["clip_s"] = clip_scores(run_items, refs, clip_model, images_dir)
    return reports


def _caption_groups(
    items: Mapping[str, list[EvalItem]], refs: Any
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, str]]]:
    """Per run, the captioned results grouped by style/locale: each group's row of the report (a skip reason for a
    locale not in the references' language) and, for the groups to score, one caption per image."""
    from caption_agent.locales import language_code

    captions: dict[str, dict[str, Any]] = {label: {} for label in items}
    scored: dict[tuple[str, str], dict[str, str]] = {}
    for label, run_items in items.items():
        groups: dict[str, list[EvalItem]] = {}
        for item in run_items:
            if item.image_id is not None and item.text:
                groups.setdefault(f"{item.style or '-'}/{item.locale}", []).append(item)
        for name, members in sorted(groups.items()):
            if language_code(members[0].locale) != refs.language:
                captions[label][name] = {
                    "skipped": f"locale {members[0].locale} is not the references' language ({refs.language})",
                    "captions": len(members),
                }
                continue
            scored[label, name], captions[label][name] = _one_per_image(members)
    return captions, scored


def _add_coco_scores(
    captions: dict[str, dict[str, Any]], scored: dict[tuple[str, str], dict[str, str]], refs: Any, per_image: bool
) -> None:
    """The COCO metrics and coverage of every scored group, in one scorer run for all runs and groups."""
    all_scores = coco_scores_groups({i: r.captions for i, r in refs.images.items()}, scored)
    for (label, name), (overall, images) in all_scores.items():
        row = captions[label][name]
        row.update(
            metrics={k: round(v, 4) for k, v in overall.items()},
            coverage=round(len(scored[label, name]) / len(refs.images), 4),
        )
        if per_image:
            row["per_image"] = {
                i: {"caption": scored[label, name][i], **{k: round(v, 4) for k, v in s.items()}}
                for i, s in images.items()
            }


def _one_per_image(members: list[EvalItem]) -> tuple[dict[str, str], dict[str, Any]]:
    """COCO scores one caption per image: the first result for an image counts, later ones are counted."""
    chosen: dict[str, str] = {}
    for item in members:
        if item.image_id is not None and item.text is not None:  # the caller keeps only such items
            chosen.setdefault(item.image_id, item.text)
    return chosen, {"captions": len(chosen), "duplicates_ignored": len(members) - len(chosen)}


def moderation(items: list[EvalItem]) -> dict[str, Any]:
    """Share of project records whose caption moderation changed: a caption rule fixed, regenerated, replaced
    (fallback to the draft) or blocked it. Input-side decisions (facts cleaned before the prompt) do not count."""
    records = [i.record for i in items if i.record and i.status != "error"]
    changed, by_rule = 0, Counter[str]()
    for rec in records:
        rules = {
            d.get("rule")
            for d in rec.get("decisions", [])
            if d.get("action") in _CHANGING and "source" not in (d.get("details") or {})
        }
        attempts = (rec.get("provenance") or {}).get("refine_attempts", 0)
        if rules or rec.get("decision") in ("redact", "fallback", "block") or attempts > 1:
            changed += 1
            by_rule.update(r for r in rules if r)
    return {
        "records": len(records),
        "changed": changed,
        "changed_share": round(changed / len(records), 4) if records else None,
        "by_rule": dict(by_rule.most_common()),
    }


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
    """The report as fixed-width text tables (what `caption-agent eval captions` prints). A ``compare`` report
    gets one row per configuration under each group / preset, so configurations read side by side."""
    runs = report["runs"] if "comparison" in report else {"": report}
    lab = max((len(label) for label in runs), default=0)
    col = (lambda label: f"{label:<{lab + 2}s}") if lab else (lambda label: "")
    lines = [
        (
            f"{'[' + label + '] ' if label else ''}{r['records']} records, {r['reference_images']} reference "
            f"images ({r['reference_captions']} reference captions), {r['unmatched_records']} unmatched; "
            f"status {r['status']}"
        )
        for label, r in runs.items()
    ]
    lines += _metric_lines(runs, col)
    lines.append("")
    lines += [(f"[{label}] " if label else "") + _clip_line(r.get("clip_s")) for label, r in runs.items()]
    lines += _compliance_lines(runs, col)
    lines.append("")
    for label, r in runs.items():
        lines += _grounding_lines(f"[{label}] " if label else "", r["grounding"], r["moderation"])
    return "\n".join(lines)


def _metric_lines(runs: dict[str, dict[str, Any]], col: Any) -> list[str]:
    head = f"{'group (style/locale)':28s}{col('config')}{'n':>4s}" + "".join(f"{m:>9s}" for m in METRICS)
    lines = ["", "Caption metrics (pycocoevalcap, corpus level)", head, "-" * len(head)]
    for name in _keys(runs, "captions"):
        for n, (label, r) in enumerate((label, r) for label, r in runs.items() if name in r["captions"]):
            row, first = r["captions"][name], f"{name if n == 0 else '':28s}{col(label)}"
            lines.append(
                f"{first}{row['captions']:>4d}  skipped: {row['skipped']}"
                if "skipped" in row
                else f"{first}{row['captions']:>4d}" + "".join(f"{row['metrics'][m]:>9.3f}" for m in METRICS)
            )
    return lines


def _clip_line(clip: dict[str, Any] | None) -> str:
    if not clip:
        return "CLIP-S: not computed (no CLIP model configured: --clip-model or ranker.clip_model)"
    return (
        f"CLIP-S (w={clip['w']:g}, {clip['model']}): {clip['mean']:.4f} over {clip['captions']} captions, "
        f"{clip['truncated_over_77_tokens']} truncated at 77 tokens"
    )


def _compliance_lines(runs: dict[str, dict[str, Any]], col: Any) -> list[str]:
    lines = [
        "",
        "Compliance per preset",
        (
            f"{'preset':20s}{col('config')}{'n':>4s}{'length ok':>11s}"
            f"{'chars min/med/max':>19s}{'language ok':>13s}  language counts"
        ),
        "-" * (90 + len(col(""))),
    ]
    for name in _keys(runs, "compliance"):
        for n, (label, r) in enumerate((label, r) for label, r in runs.items() if name in r["compliance"]):
            row, c = r["compliance"][name], r["compliance"][name]["chars"]
            lines.append(
                f"{name if n == 0 else '':20s}{col(label)}{row['captions']:>4d}"
                f"{_fmt(row['length_compliance']):>11s}{c['min']:>7d}/{c['median']:>4d}/{c['max']:>4d}    "
                f"{_fmt(row['language_compliance']):>13s}  {row['language']}"
            )
    return lines


def _grounding_lines(prefix: str, g: dict[str, Any], m: dict[str, Any]) -> list[str]:
    return [
        (
            f"{prefix}Grounding vs catalog: precision {_fmt(g['precision'])} ({g['supported']}/"
            f"{g['claims']} claims), recall {_fmt(g['recall'])} ({g['mentioned']}/{g['attributes']} "
            f"attributes), {g['skipped_no_product']} caption(s) without a product"
        ),
        (
            f"{prefix}Moderation changed {m['changed']}/{m['records']} captions (share "
            f"{_fmt(m['changed_share'])}); by rule {m['by_rule']}"
        ),
    ]


def _keys(runs: dict[str, dict[str, Any]], section: str) -> list[str]:
    """The union of one section's keys over the runs, in first-seen order."""
    return list(dict.fromkeys(k for r in runs.values() for k in r[section]))
