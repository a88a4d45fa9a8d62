"""Reading localization input: plain caption rows (JSONL/CSV/Parquet) and caption jobs' structured results (subject,
facts, image text, faces), turned into one (caption, target locale) item each."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from caption_agent.jobs.manifest import JobItem, digest, fingerprint
from caption_agent.jobs.manifest_rows import read_rows
from caption_agent.records import read_records
from caption_agent.refiners.subject import read_subject
from caption_agent.schemas import DraftSubject, GroundingFact

_LOCALIZABLE = ("ok",)


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


class SkipCounter:
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
    inputs: Path,
    locales: Sequence[str],
    *,
    style: str,
    include_review: bool = False,
    skipped: SkipCounter | None = None,
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
