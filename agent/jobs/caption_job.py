"""Batch captioning: a manifest in, one record per item out, exactly once across kills and restarts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from pydantic import Field

from caption_agent.config import AgentConfig
from caption_agent.jobs.engine import JobOptions, JobSummary, StageSpec, config_fingerprint, run_job
from caption_agent.jobs.manifest import CaptionItem, ManifestError, iter_items, read_rows

log = logging.getLogger("caption_agent.jobs")


class CaptionJobOptions(JobOptions):
    """Options of ``caption-agent batch caption``."""

    style: str | None = Field(None, description="Style for rows that name none; the config default if unset.")
    locale: str | None = Field(None, description="Locale for rows that name none; the config default if unset.")


class CaptionStage:
    """Captions one batch with a CaptionAgent: the pipeline's batched stages (decode, screen, draft, rank, check
    skus and ground, refine with bounded concurrency, moderate)."""

    def __init__(self, config: dict[str, Any] | None = None, agent: Any = None) -> None:
        self._config = config
        self._agent = agent

    @property
    def agent(self) -> Any:
        if self._agent is None:
            from caption_agent.pipeline import CaptionAgent

            self._agent = CaptionAgent(AgentConfig.load(**(self._config or {})))
        return self._agent

    def warm(self) -> None:
        """Load every stage now, on one thread, so that concurrent batches never race to load a model."""
        a = self.agent
        for name in ("drafter", "ranker", "retriever", "refiner", "policy"):
            getattr(a, name)

    def __call__(self, items: Sequence[CaptionItem]) -> list[dict[str, Any]]:
        # Unknown skus are the pipeline's to refuse (one rule for API, CLI, service and jobs).
        results = self.agent.caption_batch([i.request() for i in items])
        return [
            item.annotate(result.model_dump(mode="json", exclude_none=True)) for item, result in zip(items, results)
        ]

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()


def count_items(manifest: Path) -> int | None:
    """Rows in a manifest, for the progress bar's ETA (cheap: no image is read)."""
    manifest = Path(manifest)
    if manifest.suffix.lower() == ".parquet" and manifest.is_file():
        from caption_agent._extras import require

        return (
            require("pyarrow.parquet", "parquet", "Reading a Parquet manifest", package="pyarrow")
            .ParquetFile(manifest)
            .metadata.num_rows
        )
    return sum(1 for _ in read_rows(manifest))


def run_caption_job(
    manifest: Path | str, options: CaptionJobOptions, config: AgentConfig | None = None, *, agent: Any = None
) -> JobSummary:
    """Caption every item of ``manifest`` into ``options.out``; safe to kill and re-run.

    ``agent`` reuses a loaded CaptionAgent (local runner only); otherwise one is built from ``config``.
    """
    manifest = Path(manifest)
    if not manifest.exists():
        raise ManifestError(f"manifest {str(manifest)!r} does not exist.")
    config = agent.config if agent is not None else (config or AgentConfig.load())
    style = options.style or config.default_style
    locale = options.locale or config.default_locale
    items = iter_items(manifest, style=style, locale=locale, limits=config.images)
    if options.limit:
        items = _take(items, options.limit)
    total = count_items(manifest)
    if options.limit and total is not None:
        total = min(total, options.limit)
    config_data = config.model_dump(mode="json")
    spec = StageSpec(
        stage="caption_agent.jobs.caption_job:CaptionStage",
        item="caption_agent.jobs.manifest:CaptionItem",
        kwargs={"config": config_data},
    )
    stage = None
    if options.runner == "local":
        stage = CaptionStage(config_data, agent=agent)
        stage.warm()
    try:
        return run_job("caption", items, stage, spec, options, fingerprint=config_fingerprint(config), total=total)
    finally:
        if stage is not None and agent is None:
            stage.close()


def _take(items: Any, n: int) -> Any:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item
