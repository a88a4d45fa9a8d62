"""Typer commands: `policy check|show` and `review export|list|import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from caption_agent.errors import CaptionAgentError, describe

policy_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Validate and inspect policy files.")
review_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The human review queue (JSONL).")

PolicyOpt = Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy YAML (default: bundled).")]


def _fail(exc: Exception, code: int = 2) -> None:
    typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@policy_app.command("check")
def check(file: Annotated[Path, typer.Argument(help="Policy YAML to validate.")]) -> None:
    """Validate FILE and explain every error (key path, line, what is wrong, a suggestion)."""
    from caption_agent.policies.schema import RulesConfig, load_policy
    from caption_agent.prompts import list_styles

    try:
        loaded = load_policy(file)
    except CaptionAgentError as exc:
        _fail(exc, 1)
    typer.echo(f"OK {file}: version {loaded.version}, sha256 {loaded.hash[:16]}")
    for name in RulesConfig.model_fields:
        cfg = getattr(loaded.base_rules, name)
        state = f"action={cfg.action}" if cfg.enabled else "DISABLED"
        typer.echo(f"  {name:13s} {state}")
        if cfg.enabled and cfg.action == "allow":
            typer.secho(f"  warning: {name} only records violations (action: allow)", fg=typer.colors.YELLOW)
    try:
        known = set(list_styles())
    except CaptionAgentError:
        known = set()
    for preset in loaded.preset_rules:
        note = "" if preset in known else "  (warning: no such bundled style preset; fine if it is in your folder)"
        typer.echo(f"  preset override: {preset}{note}")


@policy_app.command("show")
def show(
    preset: Annotated[Optional[str], typer.Option("--preset", help="Show the rules for this style preset.")] = None,
    file: PolicyOpt = None,
) -> None:
    """Print the effective policy (the bundled default unless --policy) as YAML."""
    import yaml

    from caption_agent.policies.schema import load_policy

    try:
        loaded = load_policy(file)
    except CaptionAgentError as exc:
        _fail(exc)
    rules = loaded.rules_for(preset) if preset else loaded.base_rules
    doc = {
        "version": loaded.version,
        "sha256": loaded.hash,
        "source": loaded.path,
        "preset": preset,
        "rules": rules.model_dump(mode="json"),
    }
    typer.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110))


@review_app.command("export")
def review_export(
    results: Annotated[Path, typer.Argument(help="Results JSONL (from `caption` or a batch job).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Review queue JSONL (appended).")],
    threshold: Annotated[Optional[float], typer.Option(help="Also queue results under this confidence.")] = None,
) -> None:
    """Append every result that needs review to the queue (each result once)."""
    from caption_agent.policies.review import export_reviews

    try:
        added = export_reviews(results, out, threshold)
    except CaptionAgentError as exc:
        _fail(exc)
    typer.echo(f"queued {len(added)} result(s) in {out}")


@review_app.command("list")
def review_list(
    queue: Annotated[Path, typer.Argument(help="Review queue JSONL.")],
    pending: Annotated[bool, typer.Option("--pending/--all", help="Only items without a decision.")] = True,
) -> None:
    """Show queued items: id, key, why, caption."""
    from caption_agent.policies.review import ReviewQueue

    try:
        items = list(ReviewQueue(queue).items())
    except CaptionAgentError as exc:
        _fail(exc)
    shown = [i for i in items if not (pending and i.get("decision"))]
    for item in shown:
        typer.echo(f"{item['review_id']}  {item.get('key') or item.get('image') or ''}")
        for reason in item.get("reasons", [])[:5]:
            typer.echo(f"    why: {reason[:160]}")
        typer.echo(f"    text: {item.get('text')!r}\n    draft: {item.get('draft')!r}")
    typer.echo(f"{len(shown)} of {len(items)} item(s)")


@review_app.command("import")
def review_import(
    decisions: Annotated[Path, typer.Argument(help="Reviewer verdicts JSONL (or the queue with decisions filled).")],
    results: Annotated[
        Path,
        typer.Option(
            "--results",
            help="Results JSONL the queue was made from, or the review queue itself (the service's verdicts "
            "apply to the queued results).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the updated results JSONL.")],
    policy: PolicyOpt = None,
    recheck: Annotated[
        bool,
        typer.Option(
            "--recheck/--no-recheck", help="Re-check edited text for PII, blocklisted words, injection and length."
        ),
    ] = True,
) -> None:
    """Apply reviewers' verdicts (approve / edit / reject) to RESULTS and write OUT.

    For the service's desk: `review import QUEUE.decisions.jsonl --results QUEUE --out reviewed.jsonl`."""
    from caption_agent.policies.engine import PolicyEngine
    from caption_agent.policies.verdicts import import_decisions

    try:
        engine = PolicyEngine.load(policy) if recheck else None
        report = import_decisions(decisions, results, out, engine=engine, recheck=recheck)
    except CaptionAgentError as exc:
        _fail(exc)
    typer.echo(report.summary())
    for rid in report.held:
        typer.secho(f"  held: {rid} (edit failed the re-check; see its decisions)", fg=typer.colors.YELLOW)
    if report.unmatched:
        typer.secho(f"  no result for: {', '.join(report.unmatched)}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1)
