"""`caption-agent batch caption|localize`: thin Typer wrappers over the job functions.

Exit codes: 0 done, 1 done but some items are error records (rerun with --retry-errors), 2 the job could not run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agent.errors import CaptionAgentError

batch_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Resumable batch jobs: caption a catalog's images, localize captions.")

Out = Annotated[Path, typer.Option("--out", "-o", help="Output .jsonl file, or Parquet folder (--format parquet).")]
Format = Annotated[Optional[str], typer.Option("--format", help="jsonl | parquet (default: from the --out suffix).")]
Config = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")]
Style = Annotated[Optional[str], typer.Option("--style", "-s", help="Style for rows that name none.")]
Refiner = Annotated[Optional[str], typer.Option("--refiner", help="Refiner backend: local | vllm | none.")]
BaseUrl = Annotated[Optional[str], typer.Option("--base-url", help="vLLM server URL, e.g. http://127.0.0.1:8000/v1.")]
Model = Annotated[Optional[str], typer.Option("--model", help="Refiner model (served name for vllm).")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Items per pipeline batch.")]
Workers = Annotated[int, typer.Option("--workers", help="Batches in flight at once (local runner).")]
FlushEvery = Annotated[int, typer.Option("--flush-every", help="Records per write + fsync.")]
RetryErrors = Annotated[bool, typer.Option("--retry-errors", help="Reprocess only the items that failed.")]
Cache = Annotated[Optional[Path], typer.Option("--cache", help="Result cache folder shared across jobs.")]
Limit = Annotated[Optional[int], typer.Option("--limit", help="Read only the first N items.")]
Runner = Annotated[str, typer.Option("--runner", help="local | ray.")]
Address = Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default: local Ray).")]
Actors = Annotated[int, typer.Option("--ray-concurrency", help="Ray actors; each loads the models once.")]
MetricsPort = Annotated[Optional[int], typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")]
LogJson = Annotated[bool, typer.Option("--log-json", help="Write JSON log lines to stderr.")]
ShowProgress = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")]
AllowChange = Annotated[bool, typer.Option("--allow-config-change", help="Resume an output made with other settings.")]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _config(path: Path | None, refiner: str | None, base_url: str | None, model: str | None,
            catalog: Path | None = None) -> Any:
    from agent.config import AgentConfig

    refiner_over = {k: v for k, v in (("backend", refiner), ("base_url", base_url), ("model", model)) if v}
    cfg = AgentConfig.load(path)
    if refiner_over:
        cfg.refiner = cfg.refiner.model_copy(update=refiner_over)
    if catalog is not None:
        cfg.retrieval = cfg.retrieval.model_copy(update={"catalog_dir": catalog})
    return cfg


def _finish(summary: Any) -> None:
    sys.stdout.write(summary.model_dump_json() + "\n")
    sys.stdout.flush()
    line = (f"{summary.job}: {summary.written} written ({summary.ok} ok, {summary.review} review, "
            f"{summary.blocked} blocked, {summary.errors} errors, {summary.cached} cached), "
            f"{summary.already_done} already done, {summary.duplicates} duplicates, "
            f"{summary.items_per_s:.2f} items/s in {summary.elapsed_s:.1f}s -> {summary.out}")
    typer.secho(line, err=True, fg=typer.colors.YELLOW if summary.errors else typer.colors.GREEN)
    if summary.errors:
        typer.secho(f"{summary.errors} item(s) failed: {json.dumps(summary.error_types)}; rerun with "
                    f"--retry-errors to process only them.", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(1)


def _logging(log_json: bool) -> None:
    if log_json:
        from agent.jobs.metrics import configure_json_logging

        configure_json_logging()


@batch_app.command("caption")
def caption_cmd(
    manifest: Annotated[Path, typer.Argument(help="A folder of images, or a .jsonl/.csv/.parquet manifest.")],
    out: Out,
    format: Format = None,
    style: Style = None,
    locale: Annotated[Optional[str], typer.Option("--locale", "-l", help="Locale for rows that name none.")] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="Embedded Chroma folder made by `ingest`.")] = None,
    refiner: Refiner = None,
    base_url: BaseUrl = None,
    model: Model = None,
    batch_size: BatchSize = 16,
    workers: Workers = 1,
    flush_every: FlushEvery = 32,
    retry_errors: RetryErrors = False,
    cache: Cache = None,
    limit: Limit = None,
    runner: Runner = "local",
    address: Address = None,
    ray_concurrency: Actors = 1,
    metrics_port: MetricsPort = None,
    log_json: LogJson = False,
    progress: ShowProgress = True,
    allow_config_change: AllowChange = False,
    config: Config = None,
) -> None:
    """Caption every image of MANIFEST into OUT; kill and re-run at will: each item is written exactly once."""
    from agent.jobs.caption_job import CaptionJobOptions, run_caption_job

    _logging(log_json)
    try:
        cfg = _config(config, refiner, base_url, model, catalog)
        options = CaptionJobOptions(out=out, format=format, style=style, locale=locale, batch_size=batch_size,
                                    workers=workers, flush_every=flush_every, retry_errors=retry_errors,
                                    cache_dir=cache, limit=limit, runner=runner, ray_address=address,
                                    ray_concurrency=ray_concurrency, metrics_port=metrics_port, progress=progress,
                                    allow_config_change=allow_config_change)
        summary = run_caption_job(manifest, options, cfg)
    except CaptionAgentError as exc:
        _fail(exc)
    except ValueError as exc:  # pydantic: a bad option value
        _fail(exc)
    _finish(summary)


@batch_app.command("localize")
def localize_cmd(
    inputs: Annotated[Path, typer.Argument(metavar="IN", help="Caption job results (.jsonl or Parquet folder), or "
                                           "plain captions (.jsonl/.csv/.parquet: text, facts, style, id).")],
    locales: Annotated[str, typer.Option("--locales", help="Comma-separated target locales, e.g. de-DE,fr-FR.")],
    out: Out,
    format: Format = None,
    style: Style = None,
    include_review: Annotated[bool, typer.Option("--include-review", help="Also localize `review` results.")] = False,
    refiner: Refiner = None,
    base_url: BaseUrl = None,
    model: Model = None,
    batch_size: BatchSize = 32,
    workers: Workers = 1,
    flush_every: FlushEvery = 32,
    retry_errors: RetryErrors = False,
    cache: Cache = None,
    limit: Limit = None,
    runner: Runner = "local",
    address: Address = None,
    ray_concurrency: Actors = 1,
    metrics_port: MetricsPort = None,
    log_json: LogJson = False,
    progress: ShowProgress = True,
    allow_config_change: AllowChange = False,
    config: Config = None,
) -> None:
    """Localize every caption of IN into each of --locales; resumable like `batch caption`."""
    from agent.jobs.localize_job import LocalizeJobOptions, run_localize_job

    _logging(log_json)
    try:
        cfg = _config(config, refiner, base_url, model)
        options = LocalizeJobOptions(out=out, format=format, locales=[s.strip() for s in locales.split(",")
                                                                      if s.strip()],
                                     style=style, include_review=include_review, batch_size=batch_size,
                                     workers=workers, flush_every=flush_every, retry_errors=retry_errors,
                                     cache_dir=cache, limit=limit, runner=runner, ray_address=address,
                                     ray_concurrency=ray_concurrency, metrics_port=metrics_port,
                                     progress=progress, allow_config_change=allow_config_change)
        summary = run_localize_job(inputs, options, cfg)
    except CaptionAgentError as exc:
        _fail(exc)
    except ValueError as exc:
        _fail(exc)
    _finish(summary)
