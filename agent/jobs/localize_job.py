"""Batch localization: captions (a caption job's results, or plain rows with their facts) into many locales.

Each (caption, locale) pair is one item: a RefineJob with the caption's preset and the source caption as the
draft, refined through ``refiner.refine_many`` (concurrent requests on the vLLM backend), then moderated by the
policy engine in the target locale. Output records are CaptionResults (``draft`` = the source caption) plus
``source_key``, so the same readers serve both jobs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import Field, ValidationError

from caption_agent.config import AgentConfig
from caption_agent.errors import CaptionAgentError, ConfigError
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
from caption_agent.locales import normalize_locale, writing_system
from caption_agent.schemas import CaptionResult, DraftSubject, GroundingFact

# The input side lives in localize_rows; these names stay importable from here (the service, the Ray stage spec).
__all__ = [
    "CaptionRow",
    "LocalizeItem",
    "LocalizeJobOptions",
    "LocalizeStage",
    "iter_localize_items",
    "localize_result",
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


def localize_result(result: CaptionResult, locales: Sequence[str], stage: LocalizeStage) -> list[CaptionResult]:
    """The library call: one CaptionResult (``CaptionAgent.caption``'s) in each of ``locales``, refined and
    moderated by ``stage`` (``LocalizeStage(config, refiner=agent.refiner, policy=agent.policy)``)."""
    if result.text is None:
        raise ValueError(f"result {result.key or ''} has no text to localize (status {result.status}).")
    row = CaptionRow.model_validate(result_row(result.model_dump(mode="json")))
    items = list(row_items(row, [normalize_locale(loc) for loc in locales], style=result.style))
    return [
        CaptionResult.model_validate({k: v for k, v in r.items() if k in CaptionResult.model_fields})
        for r in stage(items)
    ]


def _same_language(item: LocalizeItem) -> bool:
    """Whether the source caption is already in the target language and script (then it may stand in as a
    fallback): en-US for en-GB yes, zh-TW (Traditional) for zh-CN (Simplified) no."""
    try:
        source = item.source_locale
        return source is not None and writing_system(source) == writing_system(item.locale)
    except CaptionAgentError:  # an unreadable source locale: assume another language
        return False


class LocalizeStage:
    """Localizes one batch: refine every pair concurrently, then moderate each in its target locale."""

    def __init__(self, config: dict[str, Any] | None = None, refiner: Any = None, policy: Any = None) -> None:
        self.config = AgentConfig.load(**(config or {}))
        self._refiner, self._policy = refiner, policy

    @property
    def refiner(self) -> Any:
        if self._refiner is None:
            from caption_agent.refiners.chain import build_chain

            self._refiner = build_chain(self.config.refiner)  # the primary, then its fallbacks (template, draft)
        return self._refiner

    @property
    def policy(self) -> Any:
        if self._policy is None:
            from caption_agent.policies import PolicyEngine

            self._policy = PolicyEngine.load(self.config.policy.file)
        return self._policy

    def warm(self) -> None:
        _ = self.refiner, self.policy

    def __call__(self, items: Sequence[LocalizeItem]) -> list[dict[str, Any]]:
        """The shared refine -> moderate -> regenerate -> fallback loop over the batch, in each target locale.

        The source caption is the draft. It stands in for a rejected answer only when it is already in the target
        language; otherwise a rejected answer goes to review and no usable answer is a retryable error."""
        from caption_agent import refine_loop
        from caption_agent.policies import ModerationContext
        from caption_agent.prompts import load_preset
        from caption_agent.refine_loop import Refinement
        from caption_agent.refiners import RefineJob

        records: dict[int, dict[str, Any]] = {}
        work: list[tuple[int, LocalizeItem, Refinement]] = []
        for idx, item in enumerate(items):
            try:
                preset = load_preset(item.style, self.config.prompts_dir)
                facts = [GroundingFact.model_validate(f) for f in item.facts]
                subject = DraftSubject.model_validate(item.subject) if item.subject else None
            except (CaptionAgentError, ValidationError) as exc:
                records[idx] = error_record(item, type(exc).__name__, str(exc), "input")
                continue
            job = RefineJob(
                preset=preset,
                draft=item.text,
                locale=item.locale,
                facts=facts,
                max_chars=item.max_chars,
                subject=subject,
                image_text=item.image_text,
            )
            ctx = ModerationContext(
                preset=preset,
                locale=item.locale,
                draft=item.text,
                max_chars=item.max_chars,
                faces=item.faces,
                image_text=item.image_text,
            )
            work.append((idx, item, Refinement(job=job, ctx=ctx, fallback_ok=_same_language(item))))
        refine_loop.run(self.refiner, self.policy, [r for _, _, r in work], self.config.policy.max_regenerations)
        for idx, item, done in work:
            if done.error is not None:
                records[idx] = error_record(item, type(done.error).__name__, str(done.error), done.error_stage)
            else:
                records[idx] = self._record(item, done)
        return [records[i] for i in range(len(items))]

    def _record(self, item: LocalizeItem, done: Any) -> dict[str, Any]:
        from caption_agent import __version__
        from caption_agent.policies.reasons import hold_reasons
        from caption_agent.prompts import prompt_hash

        preset, outcome = done.job.preset, done.outcome
        status = {"block": "blocked", "review": "review"}.get(outcome.action, "ok")
        done.provenance = done.provenance.model_copy(
            update={
                "prompt_version": f"{preset.name}@{preset.version}",
                "prompt_hash": prompt_hash(preset),
                "policy_version": self.policy.version,
                "policy_hash": self.policy.hash,
                "package_version": __version__,
            }
        )
        result = CaptionResult(
            key=item.key,
            status=status,
            text=done.text if status != "blocked" else None,
            style=preset.name,
            locale=item.locale,
            draft=item.text,
            facts=list(done.job.facts),
            facts_used=done.facts_used,
            decision=outcome.action,
            decisions=done.decisions,
            reasons=hold_reasons(done.decisions, outcome.action),
            provenance=done.provenance,
        )
        return item.annotate(result.model_dump(mode="json", exclude_none=True))

    def close(self) -> None:
        if self._refiner is not None:
            self._refiner.close()


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
