"""Batch localization: captions (a caption job's results, or plain rows with their facts) into many locales.

Each (caption, locale) pair is one item: a RefineJob with the caption's preset and the source caption as the
draft, refined through ``refiner.refine_many`` (concurrent requests on the vLLM backend), then moderated by the
policy engine in the target locale. Output records are CaptionResults (``draft`` = the source caption) plus
``source_key``, so the same readers serve both jobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from caption_agent.config import AgentConfig
from caption_agent.errors import CaptionAgentError, ConfigError
from caption_agent.jobs.engine import JobOptions, JobSummary, StageSpec, config_fingerprint, error_record, run_job
from caption_agent.jobs.manifest import JobItem, digest, fingerprint
from caption_agent.jobs.manifest_rows import ManifestError, read_rows
from caption_agent.jobs.records import read_records
from caption_agent.locales import normalize_locale, writing_system
from caption_agent.refiners.subject import read_subject
from caption_agent.schemas import CaptionResult, DraftSubject, GroundingFact

log = logging.getLogger("caption_agent.jobs")
_LOCALIZABLE = ("ok",)


class LocalizeJobOptions(JobOptions):
    """Options of ``caption-agent batch localize``."""

    locales: list[str] = Field(min_length=1, description="Target BCP-47 locales.")
    style: str | None = Field(None, description="Style for rows that name none; the config default if unset.")
    include_review: bool = Field(False, description="Also localize results whose status is `review`.")


class CaptionRow(BaseModel):
    """A plain caption to localize, as users write it (JSONL/CSV/Parquet)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: str = Field(
        validation_alias=AliasChoices("text", "caption"),
        min_length=1,
        max_length=5000,
        description="The source caption.",
    )
    id: str | None = Field(None, max_length=256, description="Caller's id, echoed in the output.")
    style: str | None = Field(None, max_length=64, description="Style preset of the caption.")
    locale: str | None = Field(None, max_length=35, description="Locale of the source caption.")
    sku: str | None = Field(None, max_length=128, description="Product the caption describes.")
    max_chars: int | None = Field(None, ge=10, le=5000, description="Length budget.")
    faces: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="People the source image showed, as its screen "
        "counted them; unknown (unset) holds captions for review under the people rule.",
    )
    facts: list[GroundingFact] = Field(default_factory=list, description="Facts: strings or GroundingFact objects.")
    draft: str | None = Field(
        None, max_length=2000, description="The ranked draft the caption was written from (a caption job's `draft`)."
    )
    subject: DraftSubject | None = Field(
        None, description="The drafted subject (a caption job's `subject`): named in each target language."
    )
    image_text: str = Field(
        "", max_length=2000, description="Text read from the image: quoted as written, never translated."
    )

    @field_validator("facts", mode="before")
    @classmethod
    def _facts(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):  # a CSV cell: JSON list, or one fact per line
            value = value.strip()
            value = json.loads(value) if value.startswith("[") else [v for v in value.splitlines() if v.strip()]
        sku = (info.data or {}).get("sku") or ""
        return [
            {"id": f"{sku or 'input'}:fact{i}", "sku": sku, "field": "text", "text": f, "score": 1.0}
            if isinstance(f, str)
            else f
            for i, f in enumerate(value or [])
        ]


@dataclass(frozen=True)
class LocalizeItem(JobItem):
    """One (caption, target locale) pair."""

    ORIGIN = "source_key"

    key: str
    cache_key: str
    row: int
    source_key: str
    text: str
    style: str
    locale: str
    source_locale: str | None = None
    max_chars: int | None = None
    id: str | None = None
    faces: int | None = None
    facts: list[dict[str, Any]] = field(default_factory=list)
    subject: dict[str, Any] | None = None  # DraftSubject as JSON: what the source caption is about
    image_text: str = ""
    error: dict[str, str] | None = None


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


def _source_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str, str]]:
    """(row, data, raw text, problem) of every input row: JSONL/CSV/Parquet files or a Parquet output folder."""
    if path.is_dir():
        for row, record in enumerate(read_records(path)):
            yield row, record, json.dumps(record, sort_keys=True), ""
        return
    for raw in read_rows(path):
        data, problem = raw.data, raw.problem
        if data is not None and isinstance(data.get("record"), str) and "key" in data:
            try:
                data = json.loads(data["record"])  # a single Parquet file written by a job
            except (ValueError, RecursionError) as exc:
                data, problem = None, f"its `record` cannot be parsed as JSON ({type(exc).__name__})"
        yield raw.row, data, raw.text, problem


def iter_localize_items(
    inputs: Path, locales: Sequence[str], *, style: str, include_review: bool = False, skipped: _Counter | None = None
) -> Iterator[LocalizeItem]:
    """Items for every usable source caption x target locale, lazily; unusable rows become error items."""
    inputs = Path(inputs)
    label = inputs.name
    statuses = _LOCALIZABLE + (("review",) if include_review else ())
    for row, data, text, problem in _source_rows(inputs):
        source_key = ""
        # A row's identity in the output: its row number, or, for a caption job's record, that record's key
        # (stable when the caption output is rewritten by --retry-errors, unlike its row number).
        origin = f"row:{row}"
        if data is not None and "status" in data and "key" in data:  # a caption job's result record
            if data.get("status") not in statuses or not data.get("text"):
                if skipped is not None:
                    skipped.n += 1
                continue
            source_key = str(data["key"])
            origin = f"record:{source_key}"
            data = result_row(data)
        parsed: CaptionRow | None = None
        if not problem:
            try:
                parsed = CaptionRow.model_validate(data)
            except (ValidationError, ValueError) as exc:
                problem = (
                    ("; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()))
                    if isinstance(exc, ValidationError)
                    else str(exc)
                )
            except RecursionError:
                problem = "nested too deeply"
        if parsed is None:
            key = digest("row", origin, text)
            yield LocalizeItem(
                key=key,
                cache_key=key,
                row=row,
                source_key=f"{label}#{row}",
                text="",
                style=style,
                locale="",
                error={
                    "type": "ManifestRowError",
                    "stage": "manifest",
                    "message": f"{label} row {row}: {problem}. Fix: give each row a "
                    f"`text` (optional: id, style, locale, sku, max_chars, "
                    f"facts).",
                },
            )
            continue
        yield from row_items(parsed, locales, style=style, row=row, source_key=source_key, origin=origin)


def result_row(record: dict[str, Any]) -> dict[str, Any]:
    """A caption job's result record as a CaptionRow's data: the structured result, not only its text (the
    subject, named in each language; the image's text, quoted as written; facts; the faces the screen counted)."""
    return {
        "text": record["text"],
        "style": record.get("style"),
        "locale": record.get("locale"),
        "facts": record.get("facts") or [],
        "faces": screened_faces(record),
        "draft": record.get("draft"),
        "subject": record.get("subject"),
        "image_text": record.get("image_text") or "",
        **({"id": record["id"]} if record.get("id") else {}),
    }


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


def screened_faces(record: dict[str, Any]) -> int | None:
    """The face count the image screen recorded in a caption result (None when it did not count)."""
    for decision in record.get("decisions") or []:
        if isinstance(decision, dict) and decision.get("rule") == "image_safety":
            faces = (decision.get("details") or {}).get("faces")
            return faces if isinstance(faces, int) and not isinstance(faces, bool) else None
    return None


def row_items(
    parsed: CaptionRow, locales: Sequence[str], *, style: str, row: int = 0, source_key: str = "", origin: str = ""
) -> Iterator[LocalizeItem]:
    """One item per target locale for one source caption. Cache keys depend only on the caption, its facts and
    the target settings, so the batch job and the HTTP service share cache entries; item keys add the row's
    ``origin`` (batch jobs), so every input row x locale gets its own record even when rows repeat."""
    facts = [f.model_dump(mode="json") for f in parsed.facts]
    # Every part of a fact counts: the grounding and people rules read its structured fields too.
    facts_hash = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
    subject = source_subject(parsed)
    subject_json = subject.model_dump(mode="json") if subject is not None else None
    text_hash = hashlib.sha256(parsed.text.encode("utf-8")).hexdigest()
    source_key = source_key or parsed.id or digest("source", text_hash, facts_hash)
    for locale in locales:
        fields = {
            "style": parsed.style or style,
            "locale": locale,
            "max_chars": parsed.max_chars,
            "source_locale": parsed.locale,
            "facts": facts_hash,
            "faces": parsed.faces,
            "subject": subject_json,
            "image_text": parsed.image_text,
        }
        cache_key = digest("localize", text_hash, fingerprint(fields))
        key = digest("localize", cache_key, source_key, *([origin] if origin else []))
        yield LocalizeItem(
            key=key,
            cache_key=cache_key,
            row=row,
            source_key=source_key,
            text=parsed.text,
            style=parsed.style or style,
            locale=locale,
            source_locale=parsed.locale,
            max_chars=parsed.max_chars,
            id=parsed.id,
            faces=parsed.faces,
            facts=facts,
            subject=subject_json,
            image_text=parsed.image_text,
        )


def source_subject(row: CaptionRow) -> DraftSubject | None:
    """What the source caption is about: the caption job's structured subject, else the subject read from its
    ranked draft (the drafter's fixed shapes), else None (the template then reads the caption text itself)."""
    if row.subject is not None:
        return row.subject
    read = read_subject(row.draft) if row.draft else None
    if read is None:
        return None
    if read.people:
        return DraftSubject(name=read.people, people=1, context=[read.thing] if read.thing else [], mass=1.0)
    return DraftSubject(name=read.thing, mass=1.0)


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
    skipped = _Counter()
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
