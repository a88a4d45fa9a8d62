"""Batch localization: captions (a caption job's results, or plain rows with their facts) into many locales.

Each (caption, locale) pair is one item: the library's localization state (``caption_agent.localize``) with the
source caption as the draft, run through the refine and moderate stages of the pipeline (concurrent requests on the
vLLM backend), moderated in the target locale. Output records are CaptionResults (``draft`` = the source caption) plus
``source_key``, so the same readers serve both jobs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import Field

from caption_agent.config import AgentConfig
from caption_agent.errors import ConfigError
from caption_agent.jobs.engine import JobOptions, JobSummary, StageSpec, config_fingerprint, error_record, run_job
from caption_agent.jobs.localize_rows import (
    CaptionRow,
    LocalizeItem,
    SkipCounter,
    iter_localize_items,
    result_row,
    row_items,
    screened_faces,
    source_subject,
)
from caption_agent.jobs.manifest_rows import ManifestError
from caption_agent.locales import normalize_locale
from caption_agent.localize import localization_state, run_localization
from caption_agent.schemas import CaptionResult

# The input side lives in localize_rows; these names stay importable from here (the service, the Ray stage spec).
__all__ = [
    "CaptionRow",
    "LocalizeItem",
    "LocalizeJobOptions",
    "LocalizeStage",
    "iter_localize_items",
    "result_row",
    "row_items",
    "run_localize_job",
    "screened_faces",
    "source_subject",
]

log = logging.getLogger("caption_agent.jobs")


class LocalizeJobOptions(JobOptions):
    """Options of ``caption-agent batch localize``."""

    locales: list[str] = Field(min_length=1, description="Target BCP-47 locales.")
    style: str | None = Field(None, description="Style for rows that name none; the config default if unset.")
    include_review: bool = Field(False, description="Also localize results whose status is `review`.")


class LocalizeStage:
    """Localizes one batch of (caption, locale) items with the library's localization (``caption_agent.localize``):
    the refine and moderate stages over every pair at once, each moderated in its target locale."""

    def __init__(
        self, config: dict[str, Any] | None = None, refiner: Any = None, policy: Any = None, agent: Any = None
    ) -> None:
        self._config, self._refiner, self._policy, self._agent = config, refiner, policy, agent

    @property
    def agent(self) -> Any:
        if self._agent is None:
            from caption_agent.pipeline import CaptionAgent

            config = AgentConfig.load(**(self._config or {}))
            self._agent = CaptionAgent(config, refiner=self._refiner, policy=self._policy)
        return self._agent

    @property
    def refiner(self) -> Any:
        return self.agent.refiner

    @property
    def policy(self) -> Any:
        return self.agent.policy

    def warm(self) -> None:
        _ = self.refiner, self.policy

    def __call__(self, items: Sequence[LocalizeItem]) -> list[dict[str, Any]]:
        states = [localization_state(self.agent, item) for item in items]
        run_localization(self.agent, states)
        return [record_of(item, state.done) for item, state in zip(items, states)]

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()


def record_of(item: LocalizeItem, result: CaptionResult) -> dict[str, Any]:
    """The job's record of one localized result (an error as the job's error record)."""
    if result.error is not None:
        return error_record(item, result.error.type, result.error.message, result.error.stage)
    return item.annotate(result.model_dump(mode="json", exclude_none=True))


def run_localize_job(
    inputs: Path | str,
    options: LocalizeJobOptions,
    config: AgentConfig | None = None,
    *,
    refiner: Any = None,
    policy: Any = None,
) -> JobSummary:
    """Localize every usable caption in ``inputs`` into ``options.locales``; safe to kill and re-run.

    ``refiner``/``policy`` reuse loaded objects (local runner only); otherwise they are built from ``config``.
    """
    inputs = Path(inputs)
    if not inputs.exists():
        raise ManifestError(f"input {str(inputs)!r} does not exist.")
    config = config or AgentConfig.load()
    if refiner is None and config.refiner.backend == "none":
        raise ConfigError(
            "localization needs a refiner, but refiner.backend is 'none'.",
            fix="pass --refiner vllm --base-url URL --model NAME, or --refiner local.",
        )
    locales = list(dict.fromkeys(normalize_locale(loc) for loc in options.locales))  # bad locale: fail now
    skipped = SkipCounter()
    items: Iterator[LocalizeItem] = iter_localize_items(
        inputs,
        locales,
        style=options.style or config.default_style,
        include_review=options.include_review,
        skipped=skipped,
    )
    if options.limit:
        items = (item for i, item in zip(range(options.limit), items))
    config_data = config.model_dump(mode="json")
    spec = StageSpec(
        stage="caption_agent.jobs.localize_job:LocalizeStage",
        item="caption_agent.jobs.localize_job:LocalizeItem",
        kwargs={"config": config_data},
    )
    stage = None
    if options.runner == "local":
        stage = LocalizeStage(config_data, refiner=refiner, policy=policy)
        stage.warm()
    try:
        return run_job(
            "localize",
            items,
            stage,
            spec,
            options,
            fingerprint=config_fingerprint(config, "localize"),
            skipped_inputs=skipped,
        )
    finally:
        if stage is not None and refiner is None:
            stage.close()
