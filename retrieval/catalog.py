"""The Product schema and streaming catalog readers (CSV, JSONL, Parquet).

Readers yield ``(row_no, Product | RowRejected)`` so one bad row never stops a file. ``row_no`` is the line
number in CSV/JSONL files (header = line 1, what an editor shows) and the 1-based record number in Parquet.
Problems with the file as a whole (unknown format, missing required column, unreadable bytes) raise
``CatalogError`` before anything is yielded, or as soon as they are met. A JSONL line that cannot be parsed
(bad JSON, nested too deeply, longer than ``MAX_LINE_BYTES``) is that row's reject; the file goes on.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from caption_agent._extras import require
from caption_agent._iter import MAX_LINE_BYTES, bounded_lines
from caption_agent.errors import CatalogError, CatalogRowError, InvalidLocaleError
from caption_agent.locales import normalize_locale
from caption_agent.retrieval.i18n import I18N_PREFIX, LocalizedText, parse_i18n

__all__ = ["Product", "LocalizedText", "RowRejected", "read_catalog", "detect_format", "FORMATS", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("sku", "title")
OPTIONAL_COLUMNS = ("brand", "category", "attributes", "description", "locale", "i18n")
ATTR_PREFIX = "attr."  # CSV/Parquet column `attr.color` becomes attributes["color"]
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
# Bump when the embedded text layout changes: every product's hash changes and ingestion re-embeds it.
TEXT_VERSION = "1"


class Product(BaseModel):
    """One catalog product. ``sku`` is the stable id; re-ingesting a sku replaces it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[^\s:]+$",
        description="Stable product id (no spaces or ':'; facts are cited as 'SKU:field').",
    )
    title: str = Field(min_length=1, max_length=300, description="Product name as shown to shoppers.")
    brand: str | None = Field(None, max_length=128, description="Brand name, matched exactly by hints.")
    category: str | None = Field(None, max_length=256, description="Catalog category, matched exactly by hints.")
    attributes: dict[str, str] = Field(default_factory=dict, description="Name -> value, e.g. color: matte black.")
    description: str = Field("", max_length=5000, description="Free text; untrusted data, never instructions.")
    locale: str = Field("en-US", description="BCP-47 language of the product text.")
    i18n: dict[str, LocalizedText] = Field(
        default_factory=dict,
        description='Locale -> the product\'s text in it, e.g. {"de-DE": {"title": ..., "description": ..., '
        '"attributes": {"color": "mattschwarz"}}}; a JSON object in CSV/Parquet.',
    )

    @field_validator("i18n", mode="before")
    @classmethod
    def _parse_i18n(cls, value: Any) -> Any:
        return parse_i18n(value, _coerce_attributes)

    @model_validator(mode="after")
    def _i18n_attributes(self) -> Product:
        for tag, texts in self.i18n.items():
            unknown = sorted(set(texts.attributes) - set(self.attributes))
            if unknown:
                raise ValueError(f"i18n.{tag}.attributes names attribute(s) the product lacks: {', '.join(unknown)}")
        return self

    @field_validator("brand", "category", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("attributes", mode="before")
    @classmethod
    def _parse_attributes(cls, value: Any) -> dict[str, str]:
        return _coerce_attributes(value)

    @field_validator("locale", mode="before")
    @classmethod
    def _locale(cls, value: Any) -> str:
        if value is None or (isinstance(value, str) and not value.strip()):
            return "en-US"
        try:
            return normalize_locale(str(value))
        except InvalidLocaleError as exc:
            raise ValueError(exc.reason) from None

    @property
    def language(self) -> str:
        """Primary language subtag ('en' for en-US); retrieval filters on it."""
        return self.locale.split("-")[0].lower()

    def embedding_text(self) -> str:
        """The text that is embedded and stored as the Chroma document."""
        parts = [self.title]
        if self.brand:
            parts.append(f"Brand: {self.brand}")
        if self.category:
            parts.append(f"Category: {self.category}")
        if self.attributes:
            parts.append("; ".join(f"{k}: {v}" for k, v in self.attributes.items()))
        if self.description:
            parts.append(self.description)
        return ". ".join(parts)

    def content_hash(self) -> str:
        """Stable hash of every field; unchanged rows are skipped on re-ingestion."""
        data = self.model_dump()
        if not data["i18n"]:  # products without translations keep the hash they had before i18n existed
            del data["i18n"]
        blob = json.dumps([TEXT_VERSION, data], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    def to_metadata(self) -> dict[str, str]:
        """Flat Chroma metadata (values must be scalars; None is not allowed)."""
        meta = {
            "sku": self.sku,
            "title": self.title,
            "description": self.description,
            "locale": self.locale,
            "lang": self.language,
            "attributes": json.dumps(self.attributes, ensure_ascii=False),
            "content_hash": self.content_hash(),
        }
        if self.brand:
            meta["brand"] = self.brand
        if self.category:
            meta["category"] = self.category
        if self.i18n:
            meta["i18n"] = json.dumps({k: v.model_dump() for k, v in self.i18n.items()}, ensure_ascii=False)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Product:
        """Rebuild a product from what ``to_metadata`` stored."""
        return cls(
            sku=meta["sku"],
            title=meta["title"],
            brand=meta.get("brand"),
            category=meta.get("category"),
            attributes=json.loads(meta.get("attributes") or "{}"),
            description=meta.get("description", ""),
            locale=meta.get("locale") or "en-US",
            i18n=json.loads(meta.get("i18n") or "{}"),
        )

    def fields_i18n(self) -> dict[str, str]:
        """The localized texts as flat fact fields: ``i18n.<locale>.title``, ``.description``, ``.attributes.NAME``."""
        out: dict[str, str] = {}
        for tag, texts in self.i18n.items():
            out[f"{I18N_PREFIX}{tag}.title"] = texts.title
            if texts.description:
                out[f"{I18N_PREFIX}{tag}.description"] = texts.description
            out.update({f"{I18N_PREFIX}{tag}.attributes.{k}": v for k, v in texts.attributes.items()})
        return out


class RowRejected(CatalogRowError):
    """A row that did not validate. Carries what the rejects file records."""

    def __init__(
        self, reason: str, *, row: int, field: str | None = None, sku: str | None = None, raw: Any = None
    ) -> None:
        self.sku = sku
        self.raw = raw
        self.detail = reason
        super().__init__(
            reason, row=row, field=field, fix="correct the row (see the rejects file) and ingest the file again."
        )

    def to_reject(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "reason": self.detail, "sku": self.sku, "raw": self.raw}


def _coerce_attributes(value: Any) -> dict[str, str]:
    """Accept a dict, a JSON object string, or Parquet map pairs; values must be scalars."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"attributes is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if isinstance(value, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        value = dict(value)  # pyarrow returns map<string,string> columns as key/value pairs
    if not isinstance(value, dict):
        raise ValueError(f"attributes must be a JSON object of name -> value, got {type(value).__name__}")
    if len(value) > 64:
        raise ValueError(f"attributes has {len(value)} entries; at most 64 are allowed")
    out: dict[str, str] = {}
    for key, val in value.items():
        name = str(key).strip()
        if not name or len(name) > 64 or ":" in name:
            raise ValueError(f"attribute name {key!r} must be 1-64 characters without ':'")
        if val is None:
            continue
        if isinstance(val, bool):
            val = "true" if val else "false"
        elif isinstance(val, (int, float, str)):
            val = str(val).strip()
        else:
            raise ValueError(f"attribute {name!r} must be text or a number, got {type(val).__name__}")
        if len(val) > 500:
            raise ValueError(f"attribute {name!r} is longer than 500 characters")
        if val:
            out[name] = val
    return out


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
    # utf-8-sig: spreadsheet exports often start with a byte-order mark that would corrupt the first column name
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


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


def _fold_attr_columns(record: dict[str, Any]) -> dict[str, Any]:
    """Move `attr.NAME` columns into the attributes dict (explicit columns win over the JSON column)."""
    extra = {k[len(ATTR_PREFIX) :]: v for k, v in record.items() if k.startswith(ATTR_PREFIX)}
    if not extra:
        return record
    out = {k: v for k, v in record.items() if not k.startswith(ATTR_PREFIX)}
    base = _coerce_attributes(out.get("attributes"))
    base.update({k: v for k, v in extra.items() if v not in (None, "")})
    out["attributes"] = base
    return out


def validate_record(record: Any, row: int) -> Product | RowRejected:
    """Validate one parsed record into a Product, or a RowRejected naming the row, field and reason."""
    if not isinstance(record, dict):
        return RowRejected(f"expected a JSON object, got {type(record).__name__}", row=row, raw=record)
    if isinstance(record.get("sku"), int) and not isinstance(record["sku"], bool):
        record = {**record, "sku": str(record["sku"])}  # numeric ids from JSON/Parquet are still ids
    sku = record.get("sku")
    sku = sku.strip() if isinstance(sku, str) else None
    try:
        return Product.model_validate(_fold_attr_columns(record))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError; so are attribute parse errors
        field, reason = _first_error(exc)
        return RowRejected(reason, row=row, field=field, sku=sku or None, raw=record)


def _first_error(exc: ValueError) -> tuple[str | None, str]:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            reason = "unknown field (allowed: " + ", ".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS) + ")"
        elif first["type"] == "missing":
            reason = "required field is missing"
        if len(errors) > 1:
            reason += f" (+{len(errors) - 1} more problem(s) in this row)"
        return field, reason
    return "attributes", str(exc)


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
                line = data.decode("utf-8")
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
