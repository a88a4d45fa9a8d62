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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from caption_agent.config import AgentConfig
from caption_agent.errors import BackendError, CaptionAgentError, ConfigError
from caption_agent.jobs.engine import JobOptions, JobSummary, StageSpec, config_fingerprint, error_record, run_job
from caption_agent.jobs.log import read_records
from caption_agent.jobs.manifest import JobItem, ManifestError, digest, fingerprint, read_rows
from caption_agent.locales import normalize_locale
from caption_agent.schemas import CaptionResult, GroundingFact, Provenance

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

    text: str = Field(validation_alias=AliasChoices("text", "caption"), min_length=1, max_length=5000,
                      description="The source caption.")
    id: str | None = Field(None, max_length=256, description="Caller's id, echoed in the output.")
    style: str | None = Field(None, max_length=64, description="Style preset of the caption.")
    locale: str | None = Field(None, max_length=35, description="Locale of the source caption.")
    sku: str | None = Field(None, max_length=128, description="Product the caption describes.")
    max_chars: int | None = Field(None, ge=10, le=5000, description="Length budget.")
    faces: int | None = Field(None, ge=0, le=1000, description="People the source image showed, as its screen "
                              "counted them; unknown (unset) holds captions for review under the people rule.")
    facts: list[GroundingFact] = Field(default_factory=list, description="Facts: strings or GroundingFact objects.")

    @field_validator("facts", mode="before")
    @classmethod
    def _facts(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):  # a CSV cell: JSON list, or one fact per line
            value = value.strip()
            value = json.loads(value) if value.startswith("[") else [v for v in value.splitlines() if v.strip()]
        sku = (info.data or {}).get("sku") or ""
        return [{"id": f"{sku or 'input'}:fact{i}", "sku": sku, "field": "text", "text": f, "score": 1.0}
                if isinstance(f, str) else f for i, f in enumerate(value or [])]


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


def iter_localize_items(inputs: Path, locales: Sequence[str], *, style: str, include_review: bool = False,
                        skipped: _Counter | None = None) -> Iterator[LocalizeItem]:
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
            data = {"text": data["text"], "style": data.get("style"), "locale": data.get("locale"),
                    "facts": data.get("facts") or [], "faces": screened_faces(data),
                    **({"id": data["id"]} if data.get("id") else {})}
        parsed: CaptionRow | None = None
        if not problem:
            try:
                parsed = CaptionRow.model_validate(data)
            except (ValidationError, ValueError) as exc:
                problem = (("; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()))
                           if isinstance(exc, ValidationError) else str(exc))
            except RecursionError:
                problem = "nested too deeply"
        if parsed is None:
            key = digest("row", origin, text)
            yield LocalizeItem(key=key, cache_key=key, row=row, source_key=f"{label}#{row}", text="", style=style,
                               locale="", error={"type": "ManifestRowError", "stage": "manifest",
                                                 "message": f"{label} row {row}: {problem}. Fix: give each row a "
                                                            f"`text` (optional: id, style, locale, sku, max_chars, "
                                                            f"facts)."})
            continue
        yield from row_items(parsed, locales, style=style, row=row, source_key=source_key, origin=origin)


def screened_faces(record: dict[str, Any]) -> int | None:
    """The face count the image screen recorded in a caption result (None when it did not count)."""
    for decision in record.get("decisions") or []:
        if isinstance(decision, dict) and decision.get("rule") == "image_safety":
            faces = (decision.get("details") or {}).get("faces")
            return faces if isinstance(faces, int) and not isinstance(faces, bool) else None
    return None


def row_items(parsed: CaptionRow, locales: Sequence[str], *, style: str, row: int = 0,
              source_key: str = "", origin: str = "") -> Iterator[LocalizeItem]:
    """One item per target locale for one source caption. Cache keys depend only on the caption, its facts and
    the target settings, so the batch job and the HTTP service share cache entries; item keys add the row's
    ``origin`` (batch jobs), so every input row x locale gets its own record even when rows repeat."""
    facts = [f.model_dump(mode="json") for f in parsed.facts]
    facts_hash = hashlib.sha256(json.dumps([(f["id"], f["text"]) for f in facts]).encode()).hexdigest()[:16]
    text_hash = hashlib.sha256(parsed.text.encode("utf-8")).hexdigest()
    source_key = source_key or parsed.id or digest("source", text_hash, facts_hash)
    for locale in locales:
        fields = {"style": parsed.style or style, "locale": locale, "max_chars": parsed.max_chars,
                  "source_locale": parsed.locale, "facts": facts_hash, "faces": parsed.faces}
        cache_key = digest("localize", text_hash, fingerprint(fields))
        key = digest("localize", cache_key, source_key, *([origin] if origin else []))
        yield LocalizeItem(key=key, cache_key=cache_key, row=row,
                           source_key=source_key, text=parsed.text, style=fields["style"], locale=locale,
                           source_locale=parsed.locale, max_chars=parsed.max_chars, id=parsed.id, faces=parsed.faces,
                           facts=facts)


@dataclass
class _Work:
    item: LocalizeItem
    preset: Any
    ctx: Any
    facts: list[GroundingFact]
    decisions: list[Any]
    feedback: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 0


class LocalizeStage:
    """Localizes one batch: refine every pair concurrently, then moderate each in its target locale."""

    def __init__(self, config: dict[str, Any] | None = None, refiner: Any = None, policy: Any = None) -> None:
        self.config = AgentConfig.load(**(config or {}))
        self._refiner, self._policy = refiner, policy

    @property
    def refiner(self) -> Any:
        if self._refiner is None:
            from caption_agent.refiners import REFINERS

            self._refiner = REFINERS.get(self.config.refiner.backend)(self.config.refiner)
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
        from caption_agent.policies import ModerationContext
        from caption_agent.prompts import load_preset

        records: dict[int, dict[str, Any]] = {}
        work: list[tuple[int, _Work]] = []
        for idx, item in enumerate(items):
            try:
                preset = load_preset(item.style, self.config.prompts_dir)
                facts = [GroundingFact.model_validate(f) for f in item.facts]
                ctx = ModerationContext(preset=preset, locale=item.locale, draft=item.text, facts=facts,
                                        max_chars=item.max_chars, faces=item.faces)
                t0 = time.perf_counter()
                # Source captions and their facts are untrusted: PII masked, injected instructions cut out.
                clean, _, decisions = self.policy.prepare_inputs(facts, "", ctx)
                w = _Work(item, preset, ctx, clean, list(decisions))
                w.timings["sanitize"] = round((time.perf_counter() - t0) * 1000, 2)
                work.append((idx, w))
            except CaptionAgentError as exc:
                records[idx] = error_record(item, type(exc).__name__, str(exc), "input")
        attempts = self.config.policy.max_regenerations + 1
        pending = work
        for attempt in range(attempts):
            if not pending:
                break
            from caption_agent.refiners import RefineJob

            jobs = [RefineJob(preset=w.preset, draft=w.item.text, locale=w.item.locale, facts=w.facts,
                              max_chars=w.item.max_chars, feedback=w.feedback) for _, w in pending]
            t0 = time.perf_counter()
            outputs = self.refiner.refine_many(jobs)
            share = (time.perf_counter() - t0) * 1000 / len(jobs)
            retry = []
            for (idx, w), out in zip(pending, outputs):
                w.attempts = attempt + 1
                w.timings["refine"] = round(w.timings.get("refine", 0.0) + share, 2)
                if isinstance(out, Exception):
                    # No target-language draft exists to fall back to: a failed item is a retryable error.
                    stage = "refine" if isinstance(out, (BackendError, CaptionAgentError)) else "refine-crash"
                    records[idx] = error_record(w.item, type(out).__name__, str(out), stage)
                    continue
                w.ctx.attempts_left = attempts - attempt - 1
                t1 = time.perf_counter()
                outcome = self.policy.review(out.caption, w.ctx)
                w.timings["moderate"] = round(w.timings.get("moderate", 0.0) + (time.perf_counter() - t1) * 1000, 2)
                if outcome.action == "regenerate" and w.ctx.attempts_left > 0:
                    w.decisions += outcome.decisions
                    w.feedback = outcome.feedback
                    retry.append((idx, w))
                    continue
                records[idx] = self._record(w, outcome, out.facts_used)
            pending = retry
        return [records[i] for i in range(len(items))]

    def _record(self, w: _Work, outcome: Any, facts_used: list[str]) -> dict[str, Any]:
        from caption_agent.prompts import prompt_hash

        from caption_agent import __version__

        # A regenerate left over after the last attempt cannot be published unseen.
        action = "review" if outcome.action == "regenerate" else outcome.action
        status = {"block": "blocked", "review": "review"}.get(action, "ok")
        provenance = Provenance(refiner=self.refiner.name, refiner_model=self.refiner.model_id,
                                prompt_version=f"{w.preset.name}@{w.preset.version}", prompt_hash=prompt_hash(w.preset),
                                policy_version=self.policy.version, policy_hash=self.policy.hash,
                                refine_attempts=w.attempts, timings_ms=w.timings, package_version=__version__)
        result = CaptionResult(key=w.item.key, status=status, text=outcome.text if status != "blocked" else None,
                               style=w.preset.name, locale=w.item.locale, draft=w.item.text, facts=w.facts,
                               facts_used=facts_used, decision=action, decisions=w.decisions + outcome.decisions,
                               provenance=provenance)
        return w.item.annotate(result.model_dump(mode="json", exclude_none=True))

    def close(self) -> None:
        if self._refiner is not None:
            self._refiner.close()


def run_localize_job(inputs: Path | str, options: LocalizeJobOptions, config: AgentConfig | None = None, *,
                     refiner: Any = None, policy: Any = None) -> JobSummary:
    """Localize every usable caption in ``inputs`` into ``options.locales``; safe to kill and re-run.

    ``refiner``/``policy`` reuse loaded objects (local runner only); otherwise they are built from ``config``.
    """
    inputs = Path(inputs)
    if not inputs.exists():
        raise ManifestError(f"input {str(inputs)!r} does not exist.")
    config = config or AgentConfig.load()
    if refiner is None and config.refiner.backend == "none":
        raise ConfigError("localization needs a refiner, but refiner.backend is 'none'.",
                          fix="pass --refiner vllm --base-url URL --model NAME, or --refiner local.")
    locales = list(dict.fromkeys(normalize_locale(loc) for loc in options.locales))  # bad locale: fail now
    skipped = _Counter()
    items: Iterator[LocalizeItem] = iter_localize_items(inputs, locales, style=options.style or config.default_style,
                                                        include_review=options.include_review, skipped=skipped)
    if options.limit:
        items = (item for i, item in zip(range(options.limit), items))
    config_data = config.model_dump(mode="json")
    spec = StageSpec(stage="caption_agent.jobs.localize_job:LocalizeStage", item="caption_agent.jobs.localize_job:LocalizeItem",
                     kwargs={"config": config_data})
    stage = None
    if options.runner == "local":
        stage = LocalizeStage(config_data, refiner=refiner, policy=policy)
        stage.warm()
    try:
        return run_job("localize", items, stage, spec, options, fingerprint=config_fingerprint(config, "localize"),
                       skipped_inputs=skipped)
    finally:
        if stage is not None and refiner is None:
            stage.close()
