"""Streaming catalog readers (CSV/TSV, JSONL, Parquet; text formats optionally gzipped).

Readers yield ``(row_no, Product | RowRejected)`` so one bad row never stops a file. ``row_no`` is the line
number in CSV/JSONL files (header = line 1, what an editor shows) and the 1-based record number in Parquet.
Problems with the file as a whole (unknown format, missing required column, unreadable bytes) raise
``CatalogError`` before anything is yielded, or as soon as they are met. A JSONL line that cannot be parsed
(bad JSON, nested too deeply, longer than ``MAX_LINE_BYTES``) is that row's reject; the file goes on.
Each record is validated by ``product.validate_record``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterator

from caption_agent._extras import require
from caption_agent._iter import MAX_LINE_BYTES, bounded_lines
from caption_agent.errors import CatalogError
from caption_agent.retrieval.product import (
    ATTR_PREFIX,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    Product,
    RowRejected,
    validate_record,
)

__all__ = ["read_catalog", "detect_format", "FORMATS"]

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: str | Path) -> str:
    """'csv' | 'tsv' | 'jsonl' | 'parquet' from the file suffix (a trailing .gz is allowed for text formats)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and str(path).lower().endswith(".gz")):
        raise CatalogError(
            f"unknown catalog format for {str(path)!r}.",
            fix="use a .csv, .tsv, .jsonl/.ndjson (optionally .gz) or .parquet file.",
        )
    return fmt


def read_catalog(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, Product | RowRejected]]:
    """Stream ``(row_no, Product | RowRejected)`` from a catalog file."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if not path.is_file():
        raise CatalogError(f"catalog file {str(path)!r} does not exist.", fix="check the path.")
    if fmt in ("csv", "tsv"):
        return _read_csv(path, "\t" if fmt == "tsv" else ",")
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "parquet":
        return _read_parquet(path)
    raise CatalogError(f"unknown catalog format {fmt!r}.", fix="use csv, tsv, jsonl or parquet.")


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")  # type: ignore[return-value]


def _open_text(path: Path) -> IO[str]:
    raw = _open_binary(path)
    # utf-8-sig: spreadsheet exports often start with a byte-order mark that would corrupt the first column name.
    # surrogateescape: bytes that are not UTF-8 reach the row as lone surrogates, and only that row is rejected.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _check_columns(columns: list[str], path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise CatalogError(
            f"catalog {str(path)!r} lacks required column(s) {', '.join(missing)}; "
            f"found: {', '.join(columns) or 'none'}.",
            fix=f"add the columns {', '.join(REQUIRED_COLUMNS)} (header row for CSV).",
        )
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    unknown = [c for c in columns if c not in known and not c.startswith(ATTR_PREFIX)]
    if unknown:
        raise CatalogError(
            f"catalog {str(path)!r} has unknown column(s) {', '.join(unknown)}.",
            fix=f"drop them, or rename an attribute column to '{ATTR_PREFIX}NAME' "
            "(or put it in the 'attributes' JSON column).",
        )
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise CatalogError(
            f"catalog {str(path)!r} repeats column(s) {', '.join(dupes)}.", fix="keep one column per field."
        )


def _read_csv(path: Path, delimiter: str) -> Iterator[tuple[int, Product | RowRejected]]:
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise CatalogError(f"catalog {str(path)!r} is empty.", fix="add a header row and products.")
            columns = [h.strip() for h in header]
            _check_columns(columns, path)
            start = reader.line_num + 1
            for values in reader:
                row, start = start, reader.line_num + 1
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(columns):
                    yield (
                        row,
                        RowRejected(
                            f"has {len(values)} values for {len(columns)} columns "
                            "(unquoted delimiter or missing value?)",
                            row=row,
                            raw=values,
                        ),
                    )
                    continue
                yield row, validate_record(dict(zip(columns, values)), row)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError) as exc:
        raise CatalogError(
            f"cannot read {str(path)!r}: {exc}.", fix="save the catalog as UTF-8 CSV with one header row."
        ) from exc


def _read_jsonl(path: Path) -> Iterator[tuple[int, Product | RowRejected]]:
    try:
        with _open_binary(path) as fh:
            for row, (data, length) in enumerate(bounded_lines(fh, MAX_LINE_BYTES), start=1):
                if length > MAX_LINE_BYTES:
                    raw = data[:2000].decode("utf-8", errors="replace")
                    yield (
                        row,
                        RowRejected(
                            f"line is {length} bytes long; at most {MAX_LINE_BYTES} are read", row=row, raw=raw
                        ),
                    )
                    continue
                line = data.decode("utf-8", "surrogateescape")  # bad bytes: that row's reject (validate_record)
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield (
                        row,
                        RowRejected(
                            f"not valid JSON ({exc.msg} at char {exc.pos})", row=row, raw=line.rstrip("\r\n")[:2000]
                        ),
                    )
                    continue
                except (ValueError, RecursionError) as exc:  # e.g. nested deeper than the parser allows
                    yield (
                        row,
                        RowRejected(
                            f"cannot be parsed as JSON ({type(exc).__name__})", row=row, raw=line.rstrip("\r\n")[:2000]
                        ),
                    )
                    continue
                try:
                    item = validate_record(record, row)
                except RecursionError:
                    item = RowRejected("nested too deeply", row=row, raw=line.rstrip("\r\n")[:2000])
                yield row, item
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise CatalogError(
            f"cannot read {str(path)!r}: {exc}.", fix="save the catalog as UTF-8 JSON Lines, one object per line."
        ) from exc


def _read_parquet(path: Path) -> Iterator[tuple[int, Product | RowRejected]]:
    pq = require("pyarrow.parquet", "parquet", "Reading Parquet catalogs", package="pyarrow")
    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types for bad files
        raise CatalogError(
            f"cannot read Parquet file {str(path)!r}: {exc}.", fix="check that the file is a valid Parquet file."
        ) from exc
    columns = list(pfile.schema_arrow.names)
    _check_columns(columns, path)
    return _iter_parquet(pfile)


def _iter_parquet(pfile: Any) -> Iterator[tuple[int, Product | RowRejected]]:
    row = 0
    for batch in pfile.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            # Parquet has typed nulls for absent values; drop them so optional fields take their defaults.
            yield row, validate_record({k: v for k, v in record.items() if v is not None}, row)
