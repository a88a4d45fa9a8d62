"""Small text helpers shared by the refiners and the policy rules."""

from __future__ import annotations

import re
import unicodedata

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
_SPACES = re.compile(r"\s+")
_ORDINARY_SPACES = re.compile(r"[ \t\r\n\f\v\u2028\u2029]+")  # not U+00A0 / U+202F: "1,5 l" stays unbroken


def normalize(text: str) -> str:
    """NFKC, zero-width characters removed, whitespace folded. Used before matching rules."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH)).strip()


def strip_invisible(text: str) -> str:
    """Zero-width characters removed and runs of ordinary whitespace folded, nothing else: no-break spaces ("1,5 l",
    "85 %") and full-width punctuation ("。", "：") are a locale's typography and stay in published text."""
    return _ORDINARY_SPACES.sub(" ", text.translate(_ZERO_WIDTH)).strip()


def has_invisible(text: str) -> bool:
    """Whether ``text`` carries zero-width or other invisible characters."""
    return text.translate(_ZERO_WIDTH) != text


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


# Look-alike letters folded to Latin before matching rules (Cyrillic, Greek, IPA). NFKD already maps
# fullwidth, mathematical and circled letters; these survive it because they are distinct letters.
_CONFUSABLES = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "ɡ": "g",
        "ɑ": "a",
        "ı": "i",
        "ſ": "s",
        "α": "a",
        "β": "b",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ω": "w",
        "ѵ": "v",
        "ӏ": "i",
        "ғ": "f",
        "һ": "h",
        "ԍ": "g",
        "ӧ": "o",
    }
)
# Digits used as letters ("fr33", "sh1t") and OCR's l/I confusion ("lgnore"). Only for matching. Symbols
# ("$", "@", "!") are not mapped here, a trailing "!" would glue onto the word; matchers allow them per letter.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "l": "i"})


def fold(text: str) -> str:
    """Matching form: NFKC, zero-width removed, case-folded, diacritics and look-alike letters folded."""
    return skeleton_map(text, leet=False)[0]


def skeleton(text: str) -> str:
    """Like ``fold`` and also maps digits used as letters and OCR's l/I confusion (0→o, 1/l→i, 3→e, 5→s);
    both sides of a match must be skeletons."""
    return skeleton_map(text, leet=True)[0]


def skeleton_map(text: str, leet: bool = True) -> tuple[str, list[int]]:
    """``fold``/``skeleton`` plus, for each output character, the index of the input character it came from,
    so that a match found in the folded text can be cut out of the original."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch in "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u200e\u200f\u202a\u202b\u202c\u202d\u202e":
            continue
        if ch.isspace():
            out.append(" ")
            index.append(i)
            continue
        for part in unicodedata.normalize("NFKD", ch):
            if unicodedata.combining(part):
                continue
            part = part.casefold().translate(_CONFUSABLES)
            if leet:
                part = part.translate(_LEET)
            for c in part:
                out.append(c)
                index.append(i)
    return "".join(out), index


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
