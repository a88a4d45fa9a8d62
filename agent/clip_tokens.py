"""Exact CLIP token counting, offline and pure Python.

CLIP's text encoder sees at most 77 tokens, start and end tokens included. This is OpenAI CLIP's byte-level BPE
(the ``bpe_simple_vocab_16e6.txt.gz`` merges shipped by openai/CLIP and open_clip, MIT licence, see
``agent/data/README.md``) re-implemented without torch, ``regex`` or ``ftfy``:

* pre-tokenisation scans Unicode categories by hand; it splits exactly like CLIP's pattern
  ``'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`` on lower-cased text;
* of ftfy's clean-up only what changes tokens in normal text is reproduced (NFC, curly quotes, ligatures,
  character width).
  Mojibake repair is left out, so text with broken encodings may count differently.
"""

from __future__ import annotations

import gzip
import html
import unicodedata
from functools import lru_cache
from importlib import resources

__all__ = ["CLIP_CONTEXT_LENGTH", "count_clip_tokens", "clip_token_ids", "fit_clip_tokens"]

CLIP_CONTEXT_LENGTH = 77
_N_MERGES = 49152 - 256 - 2  # CLIP uses the first 48,894 merges of the file
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
_SPECIALS = ("<start_of_text>", "<end_of_text>")
# What ftfy.fix_text changes in ordinary text (uncurl_quotes, fix_latin_ligatures).
_FTFY_LITE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
        "\u0132": "IJ",
        "\u0133": "ij",
    }
)
# ftfy.fix_character_width: half/fullwidth forms to their standard width, ideographic space to a space.
_FTFY_LITE.update({0x3000: " "})
_FTFY_LITE.update(
    {
        i: unicodedata.normalize("NFKC", chr(i))
        for i in range(0xFF01, 0xFFF0)
        if unicodedata.normalize("NFKC", chr(i)) != chr(i)
    }
)


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class _ClipBPE:
    def __init__(self) -> None:
        raw = (resources.files("caption_agent") / "data" / "bpe_simple_vocab_16e6.txt.gz").read_bytes()
        lines = gzip.decompress(raw).decode("utf-8").split("\n")[1 : _N_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        self.byte_encoder = _bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += list(_SPECIALS)
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder[_SPECIALS[0]], self.encoder[_SPECIALS[1]]
        self.cache: dict[str, tuple[str, ...]] = {}

    def bpe(self, token: str) -> tuple[str, ...]:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        if len(self.cache) < 100_000:
            self.cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in _pretokenize(_clean(text)):
            if piece in _SPECIALS:
                ids.append(self.encoder[piece])
                continue
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(mapped))
        return ids


@lru_cache(maxsize=1)
def _bpe() -> _ClipBPE:
    return _ClipBPE()


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_FTFY_LITE)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


def _kind(ch: str) -> str:
    if ch.isspace():
        return "s"
    cat = unicodedata.category(ch)[0]
    return cat if cat in "LN" else "o"


def _pretokenize(text: str) -> list[str]:
    """The pieces CLIP's regex finds, in order (whitespace dropped)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        for special in _SPECIALS:
            if text.startswith(special, i):
                out.append(special)
                i += len(special)
                break
        else:
            if text[i] == "'":
                hit = next((c for c in _CONTRACTIONS if text.startswith(c, i)), None)
                if hit:
                    out.append(hit)
                    i += len(hit)
                    continue
            kind = _kind(text[i])
            if kind == "s":
                i += 1
            elif kind == "N":  # digits are single tokens
                out.append(text[i])
                i += 1
            else:
                j = i + 1
                while j < n and _kind(text[j]) == kind:
                    j += 1
                out.append(text[i:j])
                i = j
    return out


def clip_token_ids(text: str) -> list[int]:
    """CLIP token ids of ``text`` with start and end tokens, not truncated."""
    bpe = _bpe()
    return [bpe.sot, *bpe.encode(text), bpe.eot]


def count_clip_tokens(text: str) -> int:
    """Number of CLIP tokens ``text`` takes, start and end tokens included (CLIP's limit is 77)."""
    return len(_bpe().encode(text)) + 2


def fit_clip_tokens(text: str, limit: int = CLIP_CONTEXT_LENGTH) -> str:
    """Cut ``text`` at a word boundary so that it takes at most ``limit`` CLIP tokens, ending cleanly."""
    if limit < 3:
        raise ValueError("limit must leave room for the start and end tokens and one word")
    text = " ".join(text.split())
    if count_clip_tokens(text) <= limit:
        return text
    bpe = _bpe()
    budget = limit - 2
    kept: list[str] = []
    used = 0
    # Pre-tokens never span whitespace, so the count of a prefix is the sum of its words' counts.
    for word in text.split(" "):
        cost = len(bpe.encode(word))
        if used + cost > budget:
            break
        kept.append(word)
        used += cost
    out = " ".join(kept).rstrip(" ,;:-–—(")
    if out and out[-1] not in ".!?" and count_clip_tokens(out + ".") <= limit:
        out += "."
    return out
