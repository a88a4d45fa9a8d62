"""Batch captioning: a manifest in, one record per item out, exactly once across kills and restarts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

from pydantic import Field

from caption_agent.config import AgentConfig
from caption_agent.jobs.engine import JobOptions, JobSummary, StageSpec, config_fingerprint, run_job
from caption_agent.jobs.manifest import CaptionItem, iter_items
from caption_agent.jobs.manifest_rows import ManifestError, read_rows
from caption_agent.jobs.pipeline_steps import AgentRecords, caption_steps
from caption_agent.jobs.sources import SourceOptions, is_remote, iter_inputs
from caption_agent.jobs.webdataset import is_shard

if TYPE_CHECKING:
    from caption_agent.jobs.ray_sources import RaySource, StepSpec

log = logging.getLogger("caption_agent.jobs")


class CaptionJobOptions(JobOptions):
    """Options of ``caption-agent batch caption``."""

    style: str | None = Field(None, description="Style for rows that name none; the config default if unset.")
    locale: str | None = Field(None, description="Locale for rows that name none; the config default if unset.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for s3://, gs://, az:// inputs (endpoint, credentials)."
    )
    url_allowlist: list[str] = Field(
        default_factory=list, description="Hosts whose http(s) image URLs may be fetched; none: URLs are refused."
    )
    allow_private_urls: bool = Field(False, description="Let allow-listed hosts resolve to private addresses.")
    keep: Literal["new", "better"] = Field(
        "new", description="Recaptioning: keep the new caption, or whichever of old and new has the higher CLIP-S."
    )
    min_clip_s: float | None = Field(
        None, ge=0, le=2.5, description="Recaptioning: mark rows whose kept caption scores below this as filtered."
    )
    sidecars: Path | None = Field(
        None, description="WebDataset inputs: also write caption-only sidecar shards (.txt/.json) to this folder."
    )

    def sources(self) -> SourceOptions:
        return SourceOptions(
            storage_options=dict(self.storage_options),
            url_allowlist=tuple(self.url_allowlist),
            allow_private_urls=self.allow_private_urls,
        )


class CaptionStage(AgentRecords):
    """Captions one batch with a CaptionAgent: all its stages (decode and screen, draft, rank, check skus and
    ground, refine with bounded concurrency, moderate)."""

    def warm(self) -> None:
        """Load every stage now, on one thread, so that concurrent batches never race to load a model."""
        a = self.agent
        for name in ("drafter", "ranker", "retriever", "refiner", "policy"):
            getattr(a, name)

    def __call__(self, items: Sequence[CaptionItem]) -> list[dict[str, Any]]:
        # Unknown skus are the pipeline's to refuse (one rule for API, CLI, service and jobs).
        return self.records(items, self.agent.caption_batch([i.request() for i in items]))


def count_items(inputs: Path | str | Sequence[str | Path]) -> int | None:
    """Rows in a manifest, for the progress bar's ETA (cheap: no image is read); None for shards."""
    names = list(iter_inputs([str(inputs)] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]))
    if len(names) != 1 or is_shard(names[0]):
        return None
    manifest = Path(names[0])
    if manifest.suffix.lower() == ".parquet" and manifest.is_file():
        from caption_agent._extras import require

        return (
            require("pyarrow.parquet", "parquet", "Reading a Parquet manifest", package="pyarrow")
            .ParquetFile(manifest)
            .metadata.num_rows
        )
    return sum(1 for _ in read_rows(manifest))


def run_caption_job(
    manifest: Path | str | Sequence[Path | str],
    options: CaptionJobOptions,
    config: AgentConfig | None = None,
    *,
    agent: Any = None,
) -> JobSummary:
    """Caption every item of ``manifest`` into ``options.out``; safe to kill and re-run.

    ``manifest`` is a folder, a manifest file, or WebDataset shards (several, or brace patterns such as
    ``shards/{000..009}.tar``, local or on an object store). ``agent`` reuses a loaded CaptionAgent (local runner
    only); otherwise one is built from ``config``.
    """
    inputs = _checked_inputs(manifest)
    config = agent.config if agent is not None else (config or AgentConfig.load())
    style = options.style or config.default_style
    locale = options.locale or config.default_locale
    items, total = _planned_items(inputs, options, config, style, locale)
    config_data = config.model_dump(mode="json")
    recaption = {"keep": options.keep, "min_clip_s": options.min_clip_s}
    spec = StageSpec(
        stage="caption_agent.jobs.caption_job:CaptionStage",
        item="caption_agent.jobs.manifest:CaptionItem",
        kwargs={"config": config_data, "recaption": recaption},
    )
    stage = None
    if options.runner == "local":
        stage = CaptionStage(config_data, agent=agent, recaption=recaption)
        stage.warm()
    source = None
    if options.runner == "ray":
        source = _ray_source(inputs, options, config, style, locale, caption_steps(config_data, recaption))
    # How the old caption is judged changes what is written: part of the output's settings.
    extra = f"recaption:{options.keep}:{options.min_clip_s}"
    try:
        summary = run_job(
            "caption",
            items,
            stage,
            spec,
            options,
            fingerprint=config_fingerprint(config, extra if recaption_set(options) else ""),
            total=total,
            source=source,
        )
    finally:
        if stage is not None and agent is None:
            stage.close()
    if options.sidecars is not None:
        from caption_agent.jobs.sidecars import write_sidecars

        write_sidecars(options.out, options.sidecars, list(iter_inputs([str(i) for i in inputs])))
    return summary


def _planned_items(
    inputs: list[Path | str], options: CaptionJobOptions, config: AgentConfig, style: str, locale: str
) -> tuple[Iterator[CaptionItem], int | None]:
    """The items to caption (at most ``options.limit``) and how many there are, when that is cheap to know."""
    items = iter_items(inputs, style=style, locale=locale, limits=config.images, sources=options.sources())
    if options.limit:
        items = _take(items, options.limit)
    total = count_items(inputs)
    if options.limit and total is not None:
        total = min(total, options.limit)
    return items, total


def _ray_source(
    inputs: list[Path | str],
    options: CaptionJobOptions,
    config: AgentConfig,
    style: str,
    locale: str,
    steps: tuple[StepSpec, ...],
) -> RaySource:
    """The Ray runner's source: the agent's stages as named slices (``steps``), one actor pool each."""
    from caption_agent.jobs.ray_sources import RaySource

    limits = config.images.model_dump(mode="json")
    return RaySource([str(i) for i in inputs], style, locale, limits, options.sources(), options.limit, steps)


def _checked_inputs(manifest: Path | str | Sequence[Path | str]) -> list[Path | str]:
    """The inputs as a list; none, or a local one that does not exist, is a ManifestError."""
    inputs = [manifest] if isinstance(manifest, (str, Path)) else list(manifest)
    if not inputs:
        raise ManifestError("no input given.")
    for name in iter_inputs([str(i) for i in inputs]):
        if not is_remote(name) and not Path(name).exists():
            raise ManifestError(f"manifest {name!r} does not exist.")
    return inputs


def recaption_set(options: CaptionJobOptions) -> bool:
    return options.keep != "new" or options.min_clip_s is not None


def _take(items: Any, n: int) -> Any:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item
