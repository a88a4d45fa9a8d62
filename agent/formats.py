"""Quantities written in a locale's conventions from CLDR data (babel): "1.5 l" is "1,5 l" in de-DE, "1,5 l" with
a narrow no-break space in fr-FR and "1.5升" in zh-CN. Numbers are formatted, never converted: the unit stays the
catalog's unit and the value its value. A line never breaks between a number and its unit or "%": a plain space
there becomes a no-break space (U+00A0); CLDR's own no-break spaces are kept, and none is added where the locale
writes none.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from caption_agent.locales import normalize_locale

__all__ = ["UNITS", "format_quantity", "format_number"]

NBSP = "\u00a0"
# Unit symbols as catalogs write them -> CLDR unit ids (babel.units). Anything else is left as written.
UNITS = {
    "l": "volume-liter",
    "L": "volume-liter",
    "ml": "volume-milliliter",
    "mL": "volume-milliliter",
    "cl": "volume-centiliter",
    "g": "mass-gram",
    "kg": "mass-kilogram",
    "mg": "mass-milligram",
    "mm": "length-millimeter",
    "cm": "length-centimeter",
    "m": "length-meter",
    "km": "length-kilometer",
    "W": "power-watt",
    "kW": "power-kilowatt",
    "V": "electric-volt",
    "mAh": "",  # no CLDR unit: the number is formatted, the symbol kept
    "h": "duration-hour",
    "min": "duration-minute",
    "s": "duration-second",
    "°C": "temperature-celsius",
}
_QUANTITY = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,6})?)\s*(%|[A-Za-z°]{1,4})?\s*$")


def _babel(locale: str) -> str:
    return normalize_locale(locale).replace("-", "_")


def format_number(value: Decimal, locale: str) -> str:
    from babel.numbers import format_decimal

    return str(format_decimal(value, locale=_babel(locale), decimal_quantization=False))


@lru_cache(maxsize=4096)
def format_quantity(text: str, locale: str) -> str | None:
    """``text`` ("1.5 l", "85 %", "2200 W", "12") in ``locale``'s conventions, or None when it is not a plain
    quantity (a range, a fraction, words): such values are never rewritten."""
    match = _QUANTITY.match(text)
    if match is None:
        return None
    try:
        value = Decimal(match.group(1))
    except InvalidOperation:
        return None
    unit = match.group(2) or ""
    if unit == "%":
        from babel.numbers import format_percent

        out = str(format_percent(value / 100, locale=_babel(locale), decimal_quantization=False))
    elif unit and UNITS.get(unit):
        from babel.units import format_unit

        try:
            out = str(format_unit(value, UNITS[unit], length="short", locale=_babel(locale)))
        except Exception:  # noqa: BLE001 - a unit the locale's CLDR data lacks: number formatted, symbol kept
            out = f"{format_number(value, locale)} {unit}"
    elif unit in UNITS or not unit:
        out = f"{format_number(value, locale)} {unit}".strip()
    else:
        return None
    return _no_break(out)


def _no_break(text: str) -> str:
    """A plain space next to a number's unit or sign becomes a no-break space."""
    return re.sub(r"(?<=\d) (?=\D)|(?<=\D) (?=\d)", NBSP, text)
