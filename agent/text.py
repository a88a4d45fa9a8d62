"""Small text helpers shared by the refiners and the policy rules."""

from __future__ import annotations

import re
from collections.abc import Sequence

from caption_agent.canonical import canonical

_SPACES = re.compile(r"\s+")
_ORDINARY_SPACES = re.compile(r"[ \t\r\n\f\v\u2028\u2029]+")  # not U+00A0 / U+202F: "1,5 l" stays unbroken


def normalize(text: str) -> str:
    """The canonical form (agent.canonical): NFKC, invisible characters removed, whitespace folded."""
    return canonical(text).text


def fit_length(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` at a word boundary, ending cleanly (no-break spaces are kept)."""
    text = _ORDINARY_SPACES.sub(" ", text).strip()
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
            rest = text[len(opening) :].lstrip(" :,-")
            return rest[:1].upper() + rest[1:] if rest else rest
    return text


def fold(text: str) -> str:
    """Matching form: canonical, case-folded, diacritics and look-alike letters folded (agent.canonical)."""
    return canonical(text).skeleton


def skeleton(text: str) -> str:
    """Like ``fold`` and also maps digits used as letters and OCR's l/I confusion (0→o, 1/l→i, 3→e, 5→s);
    both sides of a match must be skeletons."""
    return canonical(text).leet


def skeleton_map(text: str, leet: bool = True) -> tuple[str, Sequence[int]]:
    """``fold``/``skeleton`` plus, for each output character, the index of the input character it came from,
    so that a match found in the folded text can be cut out of the original."""
    form = canonical(text)
    return (form.leet if leet else form.skeleton), form.skeleton_index


_ARTICLE = re.compile(r"\b([Aa])(n?)\s+(\w)")
_VOWEL_START = set("aeiouAEIOU")


def tidy(text: str) -> str:
    """Clean up after words were cut out: doubled spaces and punctuation, orphan conjunctions, a/an."""
    for _ in range(2):  # one cut can expose another (a preposition left before a comma)
        text = re.sub(r"\s+([,.;:!?])", r"\1", text)
        text = re.sub(r"([,;:])\s*(?=[,.;:!?])", "", text)
        text = re.sub(r"([.!?])[.!?,;:]+", r"\1", text)
        text = re.sub(r"\(\s*\)|\[\s*\]", "", text)
        text = re.sub(r"\b(and|or|with|of|in|from|made of|featuring)\s*([,.;:!?]|$)", r"\2", text)
        text = re.sub(r"\b(and|or)\s+(and|or)\b", r"\1", text)
        text = re.sub(r"^\s*(and|or|with|,)\s+", "", text, flags=re.IGNORECASE)
        text = _SPACES.sub(" ", text).strip(" ,;:")

    def article(m: re.Match[str]) -> str:
        a, n, first = m.group(1), m.group(2), m.group(3)
        want_n = first in _VOWEL_START
        return f"{a}{'n' if want_n else ''} {first}" if bool(n) != want_n else m.group(0)

    text = _ARTICLE.sub(article, text)
    return text[:1].upper() + text[1:] if text else text


# The same one-to-four-word unit three or more times in a row: a decoding loop, not prose.
_LOOP = re.compile(
    r"(?<!\S)((?:\S+\s+){0,3}?[^\s.,;:!?]+)[.,;:!?]?(?:\s+\1(?=[.,;:!?]?(?:\s|$))[.,;:!?]?){2,}", re.IGNORECASE
)


def repetition_loop(text: str) -> str | None:
    """The repeated unit if ``text`` contains a degenerate loop ("moon-bound moon-bound moon-bound"), else None."""
    match = _LOOP.search(text)
    return match.group(1) if match else None
