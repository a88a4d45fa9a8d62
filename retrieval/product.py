"""The catalog's Product schema: one product, its validation from a raw record, and how the store keeps it.

``validate_record`` turns one parsed record (a CSV row, a JSON object, a Parquet record) into a ``Product``, or a
``RowRejected`` that names the row, the field and the reason. A product gives the text that is embedded, its
content hash (unchanged rows are skipped on re-ingestion) and the flat metadata Chroma stores, and is rebuilt from
that metadata. The readers of catalog files are in ``catalog``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from caption_agent._iter import escape_surrogates, surrogate_field
from caption_agent.errors import CatalogRowError, InvalidLocaleError
from caption_agent.locales import normalize_locale
from caption_agent.retrieval.i18n import I18N_PREFIX, LocalizedText, json_cell, parse_i18n

__all__ = ["Product", "LocalizedText", "RowRejected", "validate_record", "REQUIRED_COLUMNS", "TEXT_VERSION"]

REQUIRED_COLUMNS = ("sku", "title")
OPTIONAL_COLUMNS = ("brand", "category", "attributes", "description", "locale", "i18n")
ATTR_PREFIX = "attr."  # CSV/Parquet column `attr.color` becomes attributes["color"]
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
        """The rejects file's record: every string valid UTF-8 (a lone surrogate shown as its escape)."""
        record = {"row": self.row, "field": self.field, "reason": self.detail, "sku": self.sku, "raw": self.raw}
        return escape_surrogates(record)


def _coerce_attributes(value: Any) -> dict[str, str]:
    """Accept a dict, a JSON object string, or Parquet map pairs; values must be scalars."""
    value = json_cell(value, "attributes")
    if value is None:
        return {}
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
    bad = surrogate_field(record)
    if bad is not None:
        return RowRejected(
            "holds text that is not valid Unicode (a lone surrogate, or bytes that are not UTF-8); save the "
            "catalog as UTF-8",
            row=row,
            field=bad,
            sku=None if sku is None or surrogate_field(sku) is not None else sku,
            raw=record,
        )
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
