"""Reading localization input: plain caption rows (JSONL/CSV/Parquet) and caption jobs' structured results (subject,
facts, image text, faces), turned into one (caption, target locale) item each."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import ValidationError

from caption_agent.jobs.manifest import JobItem, digest
from caption_agent.jobs.manifest_rows import read_rows
from caption_agent.localize import CaptionRow, Source, row_pairs
from caption_agent.localize import screened_faces as faces_in
from caption_agent.records import read_records
from caption_agent.schemas import DraftSubject

_LOCALIZABLE = ("ok",)


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
    return faces_in(record.get("decisions") or [])


def row_items(
    parsed: CaptionRow, locales: Sequence[str], *, style: str, row: int = 0, source_key: str = "", origin: str = ""
) -> Iterator[LocalizeItem]:
    """One item per target locale for one source caption (``localize.row_pairs``: the keys the service shares)."""
    for pair in row_pairs(parsed, locales, style=style, source_key=source_key, origin=origin):
        yield LocalizeItem(
            key=pair.key or "",
            cache_key=pair.cache_key,
            row=row,
            source_key=pair.source_key,
            text=pair.text,
            style=pair.style,
            locale=pair.locale,
            source_locale=pair.source_locale,
            max_chars=pair.max_chars,
            id=pair.id,
            faces=pair.faces,
            facts=pair.facts,
            subject=pair.subject,
            image_text=pair.image_text,
        )


def source_subject(row: CaptionRow) -> DraftSubject | None:
    """What the source caption is about (``localize.Source.what``): its structured subject, else the one read
    from its ranked draft, else None."""
    return Source(text=row.text, style=row.style or "", subject=row.subject, draft=row.draft).what()
