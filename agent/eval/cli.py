"""`caption-agent eval captions`: thin Typer wrapper over agent.eval.report (imports nothing heavy at load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from caption_agent.errors import CaptionAgentError


def eval_captions(
    results: Annotated[Path, typer.Argument(help="Results: `batch caption` JSONL/Parquet, or COCO results JSON.")],
    references: Annotated[Path, typer.Argument(help="COCO-format reference captions (JSON).")],
    compare: Annotated[
        Optional[list[str]],
        typer.Option(
            help="NAME=RESULTS: another configuration's results, evaluated against the same references and shown "
            "beside RESULTS (repeat for more)."
        ),
    ] = None,
    label: Annotated[
        Optional[str], typer.Option(help="Name of RESULTS in a comparison (default: its file stem).")
    ] = None,
    catalog: Annotated[
        Optional[Path],
        typer.Option(help="Catalog file (JSONL/CSV/Parquet) for grounding P/R; else the facts stored in the records."),
    ] = None,
    clip_model: Annotated[
        Optional[str],
        typer.Option(help="CLIP model (hub id or folder) for CLIP-S; else the config's ranker.clip_model."),
    ] = None,
    images: Annotated[
        Optional[Path],
        typer.Option(help="Folder the references' file_name paths are relative to (default: the references' folder)."),
    ] = None,
    policy: Annotated[Optional[Path], typer.Option(help="Policy file whose grounding/language rules are used.")] = None,
    style: Annotated[Optional[str], typer.Option(help="Style of results that name none (COCO results).")] = None,
    locale: Annotated[str, typer.Option(help="Locale of results that name none.")] = "en-US",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG figure here (matplotlib).")] = None,
    per_image: Annotated[bool, typer.Option(help="Include per-image scores in the JSON.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report instead of the table.")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")] = None,
) -> None:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap), CLIP-S, compliance, grounding and moderation; with
    --compare, for several configurations side by side."""
    from caption_agent.config import AgentConfig
    from caption_agent.eval.report import compare as compare_runs
    from caption_agent.eval.report import evaluate, render_table
    from caption_agent.usage import check_files, check_locale, check_style

    try:  # bad options and missing files are refused before any scorer or model loads
        if not results.is_dir():  # a Parquet results folder is fine
            check_files([results], "results file")
        check_files([references], "references file")
        for flag, path in (("--catalog", catalog), ("--policy", policy)):
            check_files([path] if path is not None else [], f"{flag} file")
        if style is not None:
            check_style(style)
        locale = check_locale(locale)
    except CaptionAgentError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    try:
        clip = clip_model or AgentConfig.load(config).ranker.clip_model
        options: dict[str, Any] = {
            "catalog": catalog,
            "clip_model": clip,
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
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    typer.echo(text if as_json else render_table(report))


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
