"""The Parquet side of a batch job's output (written by the job log, read by ``records``): part-file names, the
column layout, and pyarrow loaded on demand."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from caption_agent._extras import require

_PART = re.compile(r"^(part|compact)-(\d{8})\.parquet$")
# Parquet columns; the full record is kept as JSON in `record` so nested fields never change the schema.
COLUMNS = (
    "key",
    "status",
    "source",
    "id",
    "style",
    "locale",
    "text",
    "draft",
    "decision",
    "error_type",
    "error_stage",
    "error_message",
    "record",
    # Recaptioning: the row's old caption beside the new one (`text`), their CLIP-S, and which was kept.
    "original",
    "clip_s_original",
    "clip_s_new",
    "kept",
)


def parquet_files(folder: Path, live_only: bool = False) -> list[tuple[str, int, Path]]:
    """(kind, number, path) of the part files, oldest first. ``live_only`` leaves out parts that a compacted
    file already holds (a compact file covers every part up to its number; a kill between its rename and the
    removal of those parts must not count them twice)."""
    found = []
    for p in folder.iterdir():
        m = _PART.match(p.name)
        if m:
            found.append((m.group(1), int(m.group(2)), p))
    found.sort(key=lambda t: (t[1], t[0] == "part"))
    if not live_only:
        return found
    covered = max((seq for kind, seq, _ in found if kind == "compact"), default=-1)
    return [t for t in found if t[1] > covered or (t[1] == covered and t[0] == "compact")]


def column(record: dict[str, Any], column: str) -> str | None:
    if column == "record":
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if column.startswith("error_"):
        value = (record.get("error") or {}).get(column[6:])
    elif column.startswith("clip_s_"):
        value = (record.get("scores") or {}).get(column)
    else:
        value = record.get(column)
    return None if value is None else str(value)


def pa() -> Any:
    return require("pyarrow", "parquet", "Parquet output")


def pc() -> Any:
    return require("pyarrow.compute", "parquet", "Parquet output", package="pyarrow")


def pq() -> Any:
    return require("pyarrow.parquet", "parquet", "Parquet output", package="pyarrow")
