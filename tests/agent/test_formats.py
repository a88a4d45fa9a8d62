"""Locale formats from CLDR (babel): quantities written in each locale's conventions, never converted."""

from __future__ import annotations

import pytest

from caption_agent.formats import format_quantity

NB, NN = "\u00a0", "\u202f"


@pytest.mark.parametrize(
    ("value", "locale", "expected"),
    [
        ("1.5 l", "de-DE", f"1,5{NB}l"),  # decimal comma; a line never breaks before the unit
        ("1.5 l", "fr-FR", f"1,5{NN}l"),  # CLDR's narrow no-break space is kept
        ("1.5 l", "zh-CN", "1.5升"),  # no space where the locale writes none
        ("1.5 l", "ja-JP", f"1.5{NB}L"),
        ("2200 W", "fr-FR", f"2{NN}200{NN}W"),
        ("2200 W", "de-DE", f"2.200{NB}W"),
        ("85 %", "de-DE", f"85{NB}%"),
        ("85 %", "it-IT", "85%"),
        ("40 h", "de-DE", f"40{NB}Std."),
        ("12", "de-DE", "12"),
    ],
)
def test_quantities_follow_the_locale(value, locale, expected):
    assert format_quantity(value, locale) == expected


def test_quantities_are_never_converted_and_anything_else_is_left_alone():
    assert format_quantity("0.6 kg", "en-US") == f"0.6{NB}kg"  # not "600 g", not pounds
    for text in ("3-4 cups", "size M", "1/2 l", "two litres", "1.5 parsecs"):
        assert format_quantity(text, "de-DE") is None
