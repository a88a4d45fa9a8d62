"""`caption-agent cache dir | list | prune`: the converted-weight cache (ONNX embedders, SmolLM2 safetensors)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

cache_app = typer.Typer(no_args_is_help=True, help="Converted model weights cache: where it is, what it holds, prune.")


def _mb(size: int) -> str:
    return f"{size / 1e6:8.1f} MB"


@cache_app.command("dir")
def cache_folder() -> None:
    """Print the cache folder ($CAPTION_AGENT_CACHE_DIR, else $XDG_CACHE_HOME/caption-agent, else ~/.cache/…)."""
    from caption_agent.model_cache import cache_dir

    typer.echo(str(cache_dir()))


@cache_app.command("list")
def list_entries(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every converted model in the cache, its size, its source and whether it is stale."""
    from caption_agent.model_cache import cache_dir, entries

    found = list(entries())
    if as_json:
        rows = [{"path": str(e.path), "bytes": e.size_bytes, "source": e.source, "stale": e.stale} for e in found]
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{cache_dir()}: {len(found)} entries, {sum(e.size_bytes for e in found) / 1e6:.1f} MB")
    for e in found:
        note = f"  [stale: {e.stale}]" if e.stale else ""
        typer.echo(f"{_mb(e.size_bytes)}  {e.path.parent.name}/{e.path.name}  {e.source or ''}{note}")


@cache_app.command("prune")
def prune_entries(
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry, not only stale ones.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
) -> None:
    """Remove stale entries: unfinished builds and conversions whose source model folder is gone.

    Entries are rebuilt on their next use, so pruning never breaks a configuration; an entry being built is kept."""
    from caption_agent.model_cache import prune

    removed = prune(everything=everything, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for e in removed:
        typer.echo(f"{verb} {e.path} ({e.stale or 'all'}, {e.size_bytes / 1e6:.1f} MB)")
    typer.echo(f"{verb} {len(removed)} entries, {sum(e.size_bytes for e in removed) / 1e6:.1f} MB")
