"""One canonical form per text, computed once, read by every moderation rule (issue 25).

A text has two forms that matter:

* **as published** (``Canonical.raw``): what a reader gets. Locale typography stays in it (no-break spaces, CJK
  punctuation, ™, emoji joiners); :func:`visible` only drops the characters nobody can see.
* **canonical** (``Canonical.text``): NFKC, format and other invisible characters removed (Cf: bidi marks and
  isolates, U+2063/U+2064, tag characters, soft hyphen; U+034F, variation selectors), filler characters used as
  spaces (U+3164, U+FFA0, U+2800) read as spaces, each run of whitespace folded to one space (one line break
  when the run holds one). ``Canonical.skeleton`` adds, for matching
  only, case folding, diacritics removed and look-alike letters read as Latin (Unicode confusables, UTS #39, as
  committed in ``data/confusables_latin.tsv``; small capitals included). ``Canonical.leet`` also reads digits used
  as letters (0→o, 1/l→i, 3→e, 4→a, 5→s, 7→t).

Each form keeps, per character, the index of the raw character it came from, so a match found in a matching form
is cut out of (or masked in) the raw text: rules judge both forms and edit only what will be published. Forms are
cached per raw text in a cache bounded by bytes.
"""

from __future__ import annotations

import re
import sys
import threading
import unicodedata
from array import array
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Generic, TypeVar

__all__ = ["ByteLRU", "Canonical", "canonical", "latin_words", "is_invisible", "visible"]

# Characters read as a space: Hangul fillers and the braille blank render as blank space.
FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Not Cf but invisible: combining grapheme joiner, variation selectors, Mongolian free variation selectors.
_INVISIBLE_EXTRA = frozenset(
    "\u034f\u17b4\u17b5\u180b\u180c\u180d\u180f"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "l": "i"})
_SPACE_RUN = re.compile(r"\s+")
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def is_invisible(ch: str) -> bool:
    """A character that renders as nothing: format (Cf), variation selector, grapheme joiner."""
    return ch in _INVISIBLE_EXTRA or (unicodedata.category(ch) == "Cf" and ch not in FILLERS)


@lru_cache(maxsize=1)
def _latin() -> dict[str, str]:
    """Look-alike character -> Latin letter/digit (generated file, see scripts/gen_confusables.py)."""
    table: dict[str, str] = {}
    text = resources.files("caption_agent").joinpath("data/confusables_latin.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, letter = line.split("\t")
            table[chr(int(code, 16))] = letter
    return table


@lru_cache(maxsize=65536)
def _fold_char(ch: str) -> str:
    """Matching form of one visible character: NFKD, combining marks dropped, case-folded, look-alikes read."""
    latin = _latin()
    out = []
    for part in unicodedata.normalize("NFKD", ch):
        if unicodedata.combining(part):
            continue
        for c in part.casefold():
            out.append(latin.get(c, c))
    return "".join(out).casefold()


class Canonical:
    """The canonical and matching forms of one raw text, each with a map back to raw indices."""

    __slots__ = ("_leet", "_skeleton", "index", "raw", "text")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        chars: list[str] = []
        index = array("I")
        space_open = False

        def space(i: int, ch: str) -> None:
            nonlocal space_open
            brk = ch in _LINE_BREAKS
            if space_open and chars:
                if brk:
                    chars[-1] = "\n"  # a run of spaces with a line break folds to the line break
            elif chars:
                chars.append("\n" if brk else " ")
                index.append(i)
            space_open = True

        for i, ch in enumerate(raw):
            if ch in FILLERS or ch.isspace():
                space(i, ch)
                continue
            if is_invisible(ch):
                continue
            for c in unicodedata.normalize("NFKC", ch):
                if c.isspace():
                    space(i, c)
                    continue
                chars.append(c)
                index.append(i)
                space_open = False
        if chars and chars[-1] in " \n":
            chars.pop()
            index.pop()
        self.text = "".join(chars)
        self.index = index
        self._skeleton: tuple[str, array[int]] | None = None
        self._leet: str | None = None

    def _fold(self) -> tuple[str, array[int]]:
        if self._skeleton is None:
            out: list[str] = []
            index = array("I")
            for ch, i in zip(self.text, self.index):
                folded = ch if ch in " \n" else _fold_char(ch)
                out.append(folded)
                index.extend([i] * len(folded))
            self._skeleton = ("".join(out), index)
        return self._skeleton

    @property
    def skeleton(self) -> str:
        """Case-folded, no diacritics, look-alike letters read as Latin. Same length as ``skeleton_index``."""
        return self._fold()[0]

    @property
    def skeleton_index(self) -> array[int]:
        return self._fold()[1]

    @property
    def leet(self) -> str:
        """``skeleton`` with digits read as letters; same length and index as ``skeleton``."""
        if self._leet is None:
            self._leet = self.skeleton.translate(_LEET)
        return self._leet

    def raw_span(self, start: int, end: int, index: array[int] | None = None) -> tuple[int, int]:
        """The raw span that characters ``start:end`` of a form came from (``index``: that form's map; default the
        canonical text's). Invisible characters inside the span are part of it."""
        index = self.index if index is None else index
        if start >= end:
            at = index[start] if start < len(index) else len(self.raw)
            return at, at
        return index[start], index[end - 1] + len(self.raw[index[end - 1]])

    def sub(self, pattern: re.Pattern[str], repl: Callable[[re.Match[str], Callable[[int], str]], str]) -> str:
        """``pattern.sub`` over the canonical text, applied to the raw text: what lies between matches is copied
        from ``raw`` unchanged. ``repl(match, raw_group)`` returns the replacement; ``raw_group(n)`` is group n as
        written in raw."""
        out: list[str] = []
        last = 0
        for m in pattern.finditer(self.text):
            a, b = self.raw_span(m.start(), m.end())
            if a < last:
                continue

            def raw_group(n: int, m: re.Match[str] = m) -> str:
                if m.start(n) < 0:
                    return ""
                ga, gb = self.raw_span(m.start(n), m.end(n))
                return self.raw[ga:gb]

            out += [self.raw[last:a], repl(m, raw_group)]
            last = b
        if not out:
            return self.raw
        out.append(self.raw[last:])
        return "".join(out)

    def nbytes(self) -> int:
        size = sys.getsizeof(self.raw) + sys.getsizeof(self.text) + self.index.itemsize * len(self.index)
        if self._skeleton is not None:
            size += sys.getsizeof(self._skeleton[0]) * 2 + self._skeleton[1].itemsize * len(self._skeleton[1])
        return size


K = TypeVar("K")
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """A thread-safe LRU cache bounded by the bytes its entries hold (``size(key, value)``); an entry larger
    than an eighth of the budget is not kept."""

    def __init__(self, max_bytes: int, size: Callable[[K, V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
            return hit[0]

    def put(self, key: K, value: V) -> None:
        nbytes = self._size(key, value)
        if nbytes > self.max_bytes // 8:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, freed) = self._data.popitem(last=False)
                self._bytes -= freed

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)


_CACHE: ByteLRU[str, Canonical] = ByteLRU(32 << 20, lambda key, value: value.nbytes())


def canonical(text: str) -> Canonical:
    """The canonical forms of ``text``, computed once per text while it is cached (32 MB of forms at most)."""
    hit = _CACHE.get(text)
    if hit is None:
        hit = Canonical(text)
        hit.skeleton  # noqa: B018 - every text rule matches on it: compute it before the entry is sized
        _CACHE.put(text, hit)
    return hit


def _keep_joiner(text: str, i: int) -> bool:
    """ZWJ/ZWNJ/VS16 are typography between emoji (🧑‍🍳) and in Indic and Arabic scripts; elsewhere invisible."""
    before = text[i - 1] if i else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    if text[i] in "\ufe0f\ufe0e":
        return bool(before) and unicodedata.category(before) == "So"
    if not before or not after:
        return False

    def script_like(ch: str) -> bool:
        cat = unicodedata.category(ch)
        return (
            cat == "So"
            or ch in "\ufe0f"
            or (cat[0] in "LM" and not ch.isascii() and "LATIN" not in unicodedata.name(ch, ""))
        )

    return script_like(before) and script_like(after)


def visible(text: str) -> str:
    """``text`` as it may be published: invisible characters removed (emoji joiners and Indic/Arabic joiners
    kept), filler characters read as spaces, runs of whitespace folded (a lone no-break or narrow no-break space
    stays). Nothing else changes: no NFKC, so full-width, ™ and CJK punctuation stay as written."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch in FILLERS:
            out.append(" ")
        elif ch in "\u200d\u200c\ufe0f\ufe0e" and _keep_joiner(text, i) or not is_invisible(ch):
            out.append(ch)
    return _SPACE_RUN.sub(lambda m: m.group() if m.group() in ("\u00a0", "\u202f") else " ", "".join(out)).strip()


def latin_words(text: str) -> str:
    """``text`` with each spoofed word written in plain Latin letters: a word that reads as ASCII once invisible
    characters are dropped, NFKC applied and look-alike letters read ("wоman" with a Cyrillic о, "ᴡᴏᴍᴀɴ",
    "ｍａｎ", "wo\u2063man"). Other words (Cyrillic, CJK, accented Latin) are left as written. For rules that
    rewrite English words in place."""
    latin = _latin()

    def word(m: re.Match[str]) -> str:
        token = m.group()
        if token.isascii():
            return token
        out = []
        for ch in token:
            if is_invisible(ch):
                continue
            for c in unicodedata.normalize("NFKC", ch):
                plain = latin.get(c.casefold(), c) if not c.isascii() else c
                out.append(plain.upper() if c.isupper() and len(plain) == 1 else plain)
        plain_token = "".join(out)
        return plain_token if plain_token.isascii() and plain_token else token

    return re.sub(r"[^\s]+", word, text)
