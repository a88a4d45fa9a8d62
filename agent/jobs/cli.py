"""`caption-agent batch caption|localize`: thin Typer wrappers over the job functions.

Exit codes: 0 done, 1 done but some items are error records (rerun with --retry-errors), 2 the job could not run
(bad options are refused before anything loads), 3 done but some items are held for review (--fail-on-review).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from caption_agent.errors import CaptionAgentError, describe
from caption_agent.usage import (
    BaseUrlOpt,
    CatalogOpt,
    FailOnReviewOpt,
    ModelOpt,
    RefinerOpt,
    VlmOpt,
    VlmUrlOpt,
    check_locale,
)

batch_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Resumable batch jobs: caption a catalog's images, localize captions.",
)

Out = Annotated[Path, typer.Option("--out", "-o", help="Output .jsonl file, or Parquet folder (--format parquet).")]
Format = Annotated[Optional[str], typer.Option("--format", help="jsonl | parquet (default: from the --out suffix).")]
Config = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")]
Style = Annotated[
    Optional[str], typer.Option("--style", "-s", help="Style for rows that name none; default: alt_text (config).")
]
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

# `batch caption` options.
Inputs = Annotated[
    list[str],
    typer.Argument(
        metavar="INPUT...",
        help="A folder of images, a .jsonl/.csv/.parquet manifest, or WebDataset shards (several, or a brace "
        "pattern such as 'shards/{000..009}.tar'; local or s3://, gs://, az://).",
    ),
]
StorageOptions = Annotated[
    Optional[str], typer.Option("--storage-options", help="fsspec options as JSON, e.g. an S3 endpoint_url.")
]
UrlAllow = Annotated[
    Optional[list[str]], typer.Option("--url-allow", help="Host whose http(s) image URLs may be fetched.")
]
AllowPrivateUrls = Annotated[
    bool, typer.Option("--allow-private-urls", help="Let allow-listed hosts resolve to private addresses.")
]
Keep = Annotated[str, typer.Option("--keep", help="Recaptioning: new | better (by CLIP-S).")]
MinClipS = Annotated[
    Optional[float], typer.Option("--min-clip-s", help="Recaptioning: mark rows below this CLIP-S as filtered.")
]
Sidecars = Annotated[
    Optional[Path], typer.Option("--sidecars", help="WebDataset inputs: write caption sidecar shards here.")
]
RayGpus = Annotated[float, typer.Option("--ray-gpus", help="GPUs per Ray drafting actor.")]
RayResources = Annotated[
    Optional[str], typer.Option("--ray-resources", help="Custom Ray resources per drafting actor, as JSON.")
]
RayCpuActors = Annotated[int, typer.Option("--ray-cpu-actors", help="Ray actors for ranking/grounding.")]
RayIoActors = Annotated[int, typer.Option("--ray-io-actors", help="Ray actors for refinement.")]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _config(common: dict[str, Any], catalog: Path | None = None) -> Any:
    """The agent config from the common options, validated with every check that needs no model."""
    from caption_agent.usage import check_style, load_checked

    names = ("refiner", "model", "base_url", "vlm", "vlm_url")
    cfg = load_checked(common["config"], catalog=catalog, **{k: common[k] for k in names})
    check_style(common["style"] or cfg.default_style, cfg.prompts_dir)
    return cfg


def _check_inputs(inputs: list[str]) -> None:
    """Local inputs must exist (URIs and brace patterns are checked by the job)."""
    from caption_agent.usage import check_files

    local = [Path(i) for i in inputs if "://" not in i and "{" not in i and not Path(i).is_dir()]
    check_files(local, "input")


def _finish(summary: Any, fail_on_review: bool) -> None:
    sys.stdout.write(summary.model_dump_json() + "\n")
    sys.stdout.flush()
    line = (
        f"{summary.job}: {summary.written} written ({summary.ok} ok, {summary.review} review, "
        f"{summary.blocked} blocked, {summary.errors} errors, {summary.cached} cached), "
        f"{summary.already_done} already done, {summary.duplicates} duplicates, "
        f"{summary.items_per_s:.2f} items/s in {summary.elapsed_s:.1f}s -> {summary.out}"
    )
    typer.secho(line, err=True, fg=typer.colors.YELLOW if summary.errors else typer.colors.GREEN)
    if summary.errors:
        _explain_errors(summary.out)
        typer.secho(
            f"{summary.errors} item(s) failed: {json.dumps(summary.error_types)}; fix what the lines above say, "
            f"then rerun with --retry-errors to process only them.",
            err=True,
            fg=typer.colors.YELLOW,
        )
        raise typer.Exit(1)
    if fail_on_review and summary.review:
        typer.secho(f"{summary.review} item(s) held for review (--fail-on-review).", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(3)


def _explain_errors(out: Any) -> None:
    """Each failure (item, reason, fix), grouped by cause, from the error records of the output (streamed)."""
    from caption_agent.jobs import read_records
    from caption_agent.usage import Tally

    tally = Tally()
    try:
        for record in read_records(out):
            if record.get("status") == "error":
                item = record.get("source") or record.get("source_key") or record.get("id") or record.get("key", "")
                tally.add(str(item), "error", record.get("error"))
    except Exception:  # noqa: BLE001 - the summary is a courtesy; the records are the truth
        return
    for line in tally.failure_lines():
        typer.secho(line, err=True)


def _logging(log_json: bool) -> None:
    if log_json:
        from caption_agent.jobs.metrics import configure_json_logging

        configure_json_logging()


def _common_options(
    out: Out,
    format: Format = None,
    style: Style = None,
    refiner: RefinerOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    vlm: VlmOpt = None,
    vlm_url: VlmUrlOpt = None,
    fail_on_review: FailOnReviewOpt = False,
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
    """The options every batch command takes (its signature is spliced into each command's)."""


def _with_common_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command(own args..., **common)`` the CLI options of ``_common_options`` too."""
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.kind is not p.VAR_KEYWORD
    ]
    common = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(_common_options, eval_str=True).parameters.values()
    ]
    command.__signature__ = inspect.Signature(own[:1] + common[:1] + own[1:] + common[1:])  # type: ignore[attr-defined]
    return command


def _job_options(common: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """JobOptions fields from the common CLI options (the config and logging flags are not job options)."""
    renamed = {"cache": "cache_dir", "address": "ray_address"}
    skip = {"refiner", "base_url", "model", "config", "log_json", "vlm", "vlm_url", "fail_on_review"}
    return {renamed.get(k, k): v for k, v in common.items() if k not in skip} | fields


def _run(job: Callable[[], Any], common: dict[str, Any]) -> None:
    _logging(common["log_json"])
    try:
        summary = job()
    except (CaptionAgentError, ValueError) as exc:  # ValueError: pydantic, a bad option value
        _fail(exc)
    _finish(summary, common["fail_on_review"])


def _json_option(text: str | None, flag: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{flag} must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value


@batch_app.command("caption")
@_with_common_options
def caption_cmd(
    manifest: Inputs,
    locale: Annotated[Optional[str], typer.Option("--locale", "-l", help="Locale for rows that name none.")] = None,
    catalog: CatalogOpt = None,
    batch_size: BatchSize = 16,
    storage_options: StorageOptions = None,
    url_allow: UrlAllow = None,
    allow_private_urls: AllowPrivateUrls = False,
    keep: Keep = "new",
    min_clip_s: MinClipS = None,
    sidecars: Sidecars = None,
    ray_gpus: RayGpus = 0.0,
    ray_resources: RayResources = None,
    ray_cpu_actors: RayCpuActors = 1,
    ray_io_actors: RayIoActors = 1,
    **common: Any,
) -> None:
    """Caption every image of INPUT into OUT; kill and re-run at will: each item is written exactly once."""
    from caption_agent.jobs.caption_job import CaptionJobOptions, run_caption_job

    try:  # bad options and missing inputs are refused before anything loads
        _check_inputs(manifest)
        cfg = _config(common, catalog)
        if locale is not None:
            check_locale(locale)
    except (CaptionAgentError, ValueError) as exc:
        _fail(exc)

    def job() -> Any:
        options = CaptionJobOptions(
            **_job_options(
                common,
                locale=locale,
                batch_size=batch_size,
                storage_options=_json_option(storage_options, "--storage-options"),
                url_allowlist=url_allow or [],
                allow_private_urls=allow_private_urls,
                keep=keep,
                min_clip_s=min_clip_s,
                sidecars=sidecars,
                ray_gpus=ray_gpus,
                ray_resources=_json_option(ray_resources, "--ray-resources"),
                ray_cpu_actors=ray_cpu_actors,
                ray_io_actors=ray_io_actors,
            )
        )
        return run_caption_job(manifest, options, cfg)

    _run(job, common)


@batch_app.command("localize")
@_with_common_options
def localize_cmd(
    inputs: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help="Caption job results (.jsonl or Parquet folder), or "
            "plain captions (.jsonl/.csv/.parquet: text, facts, style, id).",
        ),
    ],
    locales: Annotated[str, typer.Option("--locales", help="Comma-separated target locales, e.g. de-DE,fr-FR.")],
    include_review: Annotated[bool, typer.Option("--include-review", help="Also localize `review` results.")] = False,
    batch_size: BatchSize = 32,
    **common: Any,
) -> None:
    """Localize every caption of IN into each of --locales; resumable like `batch caption`."""
    from caption_agent.jobs.localize_job import LocalizeJobOptions, run_localize_job

    targets = [s.strip() for s in locales.split(",") if s.strip()]
    try:  # bad options and missing inputs are refused before anything loads
        if "://" not in str(inputs) and not inputs.is_dir():
            _check_inputs([str(inputs)])
        cfg = _config(common)
        for target in targets:
            check_locale(target)
    except (CaptionAgentError, ValueError) as exc:
        _fail(exc)

    def job() -> Any:
        options = LocalizeJobOptions(
            **_job_options(common, locales=targets, include_review=include_review, batch_size=batch_size)
        )
        return run_localize_job(inputs, options, cfg)

    _run(job, common)
