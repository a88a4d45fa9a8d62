"""Small text helpers shared by the refiners and the policy rules."""

from __future__ import annotations

import re
import unicodedata

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC, zero-width characters removed, whitespace folded. Used before matching rules."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH)).strip()


def fit_length(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` at a word boundary, ending cleanly."""
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > max_chars // 2 else text[:max_chars]
    cut = cut.rstrip(" ,;:-–—(")
    if len(cut) < max_chars and cut and cut[-1] not in ".!?":
        cut += "."
    return cut[:max_chars]


def strip_opening(text: str, openings: list[str]) -> str:
    """Remove a banned opening such as "image of" and re-capitalise."""
    low = text.lower()
    for opening in sorted(openings, key=len, reverse=True):
        if low.startswith(opening.lower()):
            rest = text[len(opening):].lstrip(" :,-")
            return rest[:1].upper() + rest[1:] if rest else rest
    return text
