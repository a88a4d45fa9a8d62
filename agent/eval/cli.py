"""`caption-agent eval captions|policies|review`: thin Typer wrappers over agent.eval (nothing heavy at load).

``eval_app`` is what the `caption-agent` command line registers as its `eval` group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from caption_agent.errors import CaptionAgentError, describe

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate captions and policies.")

ResultsArg = Annotated[Path, typer.Argument(help="Results: `batch caption` JSONL/Parquet, or COCO results JSON.")]
ReferencesArg = Annotated[Path, typer.Argument(help="COCO-format reference captions (JSON).")]
CompareOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        help="NAME=RESULTS: another configuration's results, evaluated against the same references and shown "
        "beside RESULTS (repeat for more)."
    ),
]
LabelOpt = Annotated[Optional[str], typer.Option(help="Name of RESULTS in a comparison (default: its file stem).")]
CatalogFileOpt = Annotated[
    Optional[Path],
    typer.Option(help="Catalog file (JSONL/CSV/Parquet) for grounding P/R; else the facts stored in the records."),
]
ClipModelOpt = Annotated[
    Optional[str], typer.Option(help="CLIP model (hub id or folder) for CLIP-S; else the config's ranker.clip_model.")
]
ImagesOpt = Annotated[
    Optional[Path],
    typer.Option(help="Folder the references' file_name paths are relative to (default: the references' folder)."),
]
GroundingPolicyOpt = Annotated[
    Optional[Path], typer.Option(help="Policy file whose grounding/language rules are used.")
]
PolicyOpt = Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy YAML (default: bundled).")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")]


def eval_captions(
    results: ResultsArg,
    references: ReferencesArg,
    compare: CompareOpt = None,
    label: LabelOpt = None,
    catalog: CatalogFileOpt = None,
    clip_model: ClipModelOpt = None,
    images: ImagesOpt = None,
    policy: GroundingPolicyOpt = None,
    style: Annotated[Optional[str], typer.Option(help="Style of results that name none (COCO results).")] = None,
    locale: Annotated[str, typer.Option(help="Locale of results that name none.")] = "en-US",
    out: OutOpt = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG figure here (matplotlib).")] = None,
    per_image: Annotated[bool, typer.Option(help="Include per-image scores in the JSON.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report instead of the table.")] = False,
    config: ConfigOpt = None,
) -> None:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap), CLIP-S, compliance, grounding and moderation; with
    --compare, for several configurations side by side."""
    from caption_agent.config import AgentConfig
    from caption_agent.eval.report import compare as compare_runs
    from caption_agent.eval.report import evaluate, render_table

    try:  # bad options and missing files are refused before any scorer or model loads
        locale = _check_caption_inputs(results, references, catalog, policy, style, locale)
    except CaptionAgentError as exc:
        _exit(f"error: {exc}")
    try:
        options: dict[str, Any] = {
            "catalog": catalog,
            "clip_model": clip_model or AgentConfig.load(config).ranker.clip_model,
            "images_dir": images,
            "policy": policy,
            "style": style,
            "locale": locale,
            "per_image": per_image,
        }
        if compare:
            report = compare_runs(_runs(results, label, compare), references, **options)
        else:
            report = evaluate(results, references, **options)
        if plot is not None:
            from caption_agent.eval.plot import plot_report

            plot_report(report, plot)
    except CaptionAgentError as exc:
        _exit(f"error: {exc}")
    text = json.dumps(report, indent=2, ensure_ascii=False)
    _write(out, text)
    typer.echo(text if as_json else render_table(report))


def _check_caption_inputs(
    results: Path, references: Path, catalog: Path | None, policy: Path | None, style: str | None, locale: str
) -> str:
    """Refuse missing files and unknown style/locale; the locale, normalized."""
    from caption_agent.usage import check_files, check_locale, check_style

    if not results.is_dir():  # a Parquet results folder is fine
        check_files([results], "results file")
    check_files([references], "references file")
    for flag, path in (("--catalog", catalog), ("--policy", policy)):
        check_files([path] if path is not None else [], f"{flag} file")
    if style is not None:
        check_style(style)
    return check_locale(locale)


def eval_policies(
    corpus: Annotated[Path, typer.Argument(help="Corpus folder or file (YAML lists / JSONL of cases).")],
    policy: PolicyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    min_catch: Annotated[float, typer.Option(help="Exit 1 if a rule's catch rate is below this.")] = 0.0,
    max_fp: Annotated[float, typer.Option(help="Exit 1 if a rule's false-positive rate is above this.")] = 1.0,
) -> None:
    """Run an adversarial corpus through the policy engine; print catch and false-positive rate per rule."""
    from caption_agent.eval.policies import evaluate, load_corpus
    from caption_agent.policies.engine import PolicyEngine

    try:
        report = evaluate(PolicyEngine.load(policy), load_corpus(corpus))
    except CaptionAgentError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        typer.echo(report.table())
        for failure in report.failures:
            typer.echo(f"  {failure.case.id}: {'; '.join(failure.problems)}  -> {failure.action} {failure.text!r}")
    bad = [
        name
        for name, r in report.rates.items()
        if (r.catch_rate is not None and r.catch_rate < min_catch) or (r.fp_rate is not None and r.fp_rate > max_fp)
    ]
    if bad:
        typer.secho(f"rates outside the limits for: {', '.join(bad)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def eval_review(
    queue: Annotated[Path, typer.Argument(help="Review queue JSONL (the service's `review_queue`).")],
    decisions: Annotated[
        Optional[Path], typer.Option(help="Verdicts JSONL (default: QUEUE.decisions.jsonl, as the service writes).")
    ] = None,
    by: Annotated[Optional[str], typer.Option(help="Group by style | locale | drafter | refiner | audit.")] = None,
    period: Annotated[str, typer.Option(help="day | week | all.")] = "day",
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG of the rates over time here.")] = None,
    out: OutOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the table.")] = False,
) -> None:
    """Acceptance (approved as is), edit rate, rejection rate and edit distance of reviewed captions, per
    style, locale, drafter or refiner, over time."""
    from caption_agent.eval.review import plot_review, review_report
    from caption_agent.policies.review_stats import DIMENSIONS, render_table

    if by is not None and by not in DIMENSIONS:
        _fail(ValueError(f"--by {by!r}: choose one of {', '.join(DIMENSIONS)}"))
    if period not in ("day", "week", "all"):
        _fail(ValueError(f"--period {period!r}: choose day, week or all"))
    try:
        report = review_report(queue, decisions, by, period)  # type: ignore[arg-type]
        if plot is not None:
            plot_review(report, plot)
    except CaptionAgentError as exc:
        _fail(exc)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    _write(out, text)
    if as_json:
        typer.echo(text)
        return
    typer.echo(f"{report['queue']}: {report['waiting']} waiting")
    typer.echo(render_table(report["rows"], by) if report["rows"] else "no verdicts yet")


def _write(out: Path | None, text: str) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")


def _exit(message: str) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(2) from None


def _fail(exc: Exception) -> NoReturn:
    _exit(f"error: {describe(exc)}")


def _runs(results: Path, label: str | None, compare: list[str]) -> dict[str, Path]:
    """``{label: path}`` from RESULTS and the ``NAME=RESULTS`` values of --compare; labels must be unique."""
    from caption_agent.eval.data import EvalInputError

    runs = {label or results.stem: results}
    for value in compare:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise EvalInputError(f"--compare {value!r} is not NAME=RESULTS (e.g. --compare local=local.jsonl).")
        if name.strip() in runs:
            raise EvalInputError(
                f"--compare: the name {name.strip()!r} is used twice (RESULTS is named "
                f"{next(iter(runs))!r}; rename it with --label)."
            )
        runs[name.strip()] = Path(path.strip())
    return runs


# Registered in the order `caption-agent eval --help` lists them.
eval_app.command("policies")(eval_policies)
eval_app.command("captions")(eval_captions)
eval_app.command("review")(eval_review)
