"""Localized catalog text: a product's title, description and attribute values in other locales, written by
people (never machine-translated), and how fact fields carry them (``i18n.<locale>.<field>``)."""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from caption_agent.errors import InvalidLocaleError
from caption_agent.formats import format_quantity
from caption_agent.locales import LocaleFallbacks, normalize_locale

__all__ = ["I18N_PREFIX", "LocalizedText", "parse_i18n", "localized", "localized_fields"]

I18N_PREFIX = "i18n."  # fact field `i18n.de-DE.title` = the product's title as the catalog writes it in de-DE
MAX_LOCALES = 32


class LocalizedText(BaseModel):
    """A product's text in another locale, written by people (never machine-translated): what a caption in that
    locale may state. Brand and numbers need no translation; an attribute value belongs to an attribute the
    product has."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=300, description="Product name in this locale.")
    description: str = Field("", max_length=5000, description="Free text in this locale; untrusted data.")
    attributes: dict[str, str] = Field(
        default_factory=dict, description="Attribute name (as in the product's `attributes`) -> value in this locale."
    )


def json_cell(value: Any, name: str) -> Any:
    """A field that may arrive as JSON text (a CSV or Parquet cell): None when empty, else the parsed value (or
    ``value`` itself when it is not a string); bad JSON is a ValueError naming ``name`` and the position."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON ({exc.msg} at char {exc.pos})") from None


def parse_i18n(value: Any, coerce_attributes: Callable[[Any], dict[str, str]]) -> dict[str, Any]:
    """Accept a dict or a JSON object string (CSV/Parquet cell); keys become canonical BCP-47 tags and attribute
    values are read by ``coerce_attributes`` (the catalog's own rules)."""
    value = json_cell(value, "i18n")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"i18n must be a JSON object of locale -> texts, got {type(value).__name__}")
    if len(value) > MAX_LOCALES:
        raise ValueError(f"i18n has {len(value)} locales; at most {MAX_LOCALES} are allowed")
    out: dict[str, Any] = {}
    for tag, texts in value.items():
        try:
            key = normalize_locale(str(tag))
        except InvalidLocaleError as exc:
            raise ValueError(f"i18n: {exc.reason}") from None
        if isinstance(texts, dict) and "attributes" in texts:
            texts = {**texts, "attributes": coerce_attributes(texts["attributes"])}
        out[key] = texts
    return out


def localized(
    fields: Mapping[str, str], locale: str, table: LocaleFallbacks | None = None
) -> tuple[dict[str, str] | None, str | None]:
    """A product's fact fields (title, description, attributes.NAME) as written for ``locale`` and the catalog
    locale whose text serves it (``table``: the fallbacks; by default any text in the same language and script).

    The product's own fields when its locale serves, else its i18n texts for the serving locale; (None, None)
    when the catalog has no text for it. Brand, sku and category pass through as they are. Attributes the
    localized text leaves out but whose value is a plain quantity ("1.5 l", "85 %") are carried over, written in
    ``locale``'s conventions (CLDR), never converted."""
    table = table or LocaleFallbacks()
    names = ("sku", "brand", "category")
    own = fields.get("locale", "en-US")
    tags = {k[len(I18N_PREFIX) :].split(".", 1)[0] for k in fields if k.startswith(I18N_PREFIX)}
    tag = table.chain(tags | {own}, locale)
    if tag is None:
        return None, None
    if tag == own:
        keep = ("title", "description")
        return {k: v for k, v in fields.items() if k in keep + names or k.startswith("attributes.")}, tag
    prefix = f"{I18N_PREFIX}{tag}."
    out = {k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)}
    out.update({k: v for k, v in fields.items() if k in names})
    for key, value in fields.items():
        if key.startswith("attributes.") and key not in out and (formatted := format_quantity(value, locale)):
            out[key] = formatted
    return out, tag


def localized_fields(
    fields: Mapping[str, str], locale: str, table: LocaleFallbacks | None = None
) -> dict[str, str] | None:
    """The fields of :func:`localized` alone."""
    return localized(fields, locale, table)[0]
