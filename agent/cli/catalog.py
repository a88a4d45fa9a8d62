"""`caption-agent ingest`: the Typer command over ``retrieval.ingest.ingest_file``.

Nothing heavy is imported at module top; ``caption_agent.cli`` registers ``ingest`` as a sub-command.
Exit codes: 0 all rows ingested, 1 some rows rejected (the rest ingested), 2 fatal error (nothing written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from caption_agent.errors import CaptionAgentError

FileArg = Annotated[Path, typer.Argument(help="Catalog: .csv, .tsv, .jsonl/.ndjson (optionally .gz) or .parquet.")]
CatalogDirOpt = Annotated[Optional[Path], typer.Option("--catalog", help="Embedded Chroma folder (created if absent).")]
CollectionOpt = Annotated[Optional[str], typer.Option(help="Collection name (default: products).")]
ChromaUrlOpt = Annotated[
    Optional[str], typer.Option("--chroma-url", help="http://host:port of a `chroma run` server instead of --catalog.")
]
EmbedderOpt = Annotated[
    Optional[str],
    typer.Option(
        help="sentence-transformers id or folder (default: the collection's pinned one, else bundled MiniLM)."
    ),
]
FullSnapshotOpt = Annotated[bool, typer.Option("--full-snapshot", help="Remove stored products missing from FILE.")]
RejectsOpt = Annotated[
    Optional[Path],
    typer.Option(help="JSONL file for rejected rows (default: FILE.rejects.jsonl, written only if any)."),
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, max=4096, help="Products per embedding batch.")]


def ingest(
    file: FileArg,
    catalog: CatalogDirOpt = None,
    collection: CollectionOpt = None,
    chroma_url: ChromaUrlOpt = None,
    embedder: EmbedderOpt = None,
    full_snapshot: FullSnapshotOpt = False,
    rejects: RejectsOpt = None,
    batch_size: BatchSizeOpt = 64,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")] = None,
) -> None:
    """Ingest a product catalog into the Chroma store (upsert by sku; unchanged rows are skipped)."""
    from caption_agent.retrieval.catalog import detect_format
    from caption_agent.retrieval.ingest import ingest_file
    from caption_agent.retrieval.store import CatalogStore
    from caption_agent.usage import check_files

    try:  # a missing or misnamed file creates nothing (no empty catalog folder to caption against later)
        detect_format(file)
        check_files([file], "catalog file")
    except CaptionAgentError as exc:
        _exit(exc)
    default_rejects = rejects is None
    rejects_path = rejects if rejects is not None else file.with_name(file.name + ".rejects.jsonl")
    try:
        chosen = {"catalog_dir": catalog, "collection": collection, "chroma_url": chroma_url, "embedder": embedder}
        with CatalogStore.open(_retrieval_settings(config, chosen), writer=True) as store:
            summary = ingest_file(
                file,
                store,
                full_snapshot=full_snapshot,
                rejects_path=rejects_path,
                batch_size=batch_size,
                progress=progress and sys.stderr.isatty(),
            )
    except (CaptionAgentError, ValueError) as exc:
        _exit(exc)
    if default_rejects and summary.rejected == 0:
        rejects_path.unlink(missing_ok=True)  # no stray empty files next to the user's catalog
        summary.rejects_path = None
    typer.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.render())
    if summary.rejected:
        raise typer.Exit(1)


def _retrieval_settings(config: Path | None, chosen: dict[str, Any]) -> Any:
    """The config's retrieval settings with the options given on the command line."""
    from caption_agent.config import AgentConfig

    settings = AgentConfig.load(config).retrieval
    updates = {k: v for k, v in chosen.items() if v is not None}
    settings = settings.model_validate({**settings.model_dump(), **updates})
    if settings.catalog_dir is None and settings.chroma_url is None:
        raise typer.BadParameter("give --catalog DIR or --chroma-url URL.")
    return settings


def _exit(exc: Exception) -> NoReturn:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2) from None
