"""PII: e-mail addresses, phone numbers, URLs, card-like numbers and street addresses.

Masked in captions, and in catalog rows and image text before they reach the LLM unless the policy allows a
kind there. Phone numbers are found with libphonenumber (``phonenumbers``), which knows every country's formats.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, Sequence

from pydantic import Field, model_validator

from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.text import tidy

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
Kind = Literal["email", "phone", "url", "card", "address"]
ALL_KINDS: tuple[Kind, ...] = ("email", "url", "card", "phone", "address")


class PiiConfig(RuleConfig):
    action: Literal["allow", "redact", "regenerate", "fallback", "review", "block"] = "redact"
    on_exhausted: Literal["redact", "fallback", "review", "block"] = "redact"
    on_draft: Literal["allow", "redact", "review", "block"] = "redact"
    detect: list[Kind] = Field(default_factory=lambda: list(ALL_KINDS), description="Kinds to find.")
    mask: str = Field("[{kind}]", max_length=40, description="Replacement; '{kind}' is the kind's name.")
    allow_in_prompt: list[Kind] = Field(
        default_factory=list, description="Kinds that may stay in catalog/image text sent to the LLM."
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IN", "BR", "JP", "AU"],
        description="Regions whose national phone formats are recognised "
        "(the request locale's region is always added).",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> PiiConfig:
        if self.enabled and not self.detect:
            raise ValueError("detect is empty: the rule would do nothing; list kinds or set enabled: false")
        return self


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    value: str


_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})*\.[A-Za-z]{2,24}\b")
# "name [at] shop [dot] com", "name (at) shop.com": obfuscation used to slip addresses past filters.
_EMAIL_OBF = re.compile(
    r"\b[\w.+-]{1,64}\s*[\[({<]\s*at\s*[\])}>]\s*[\w-]{1,63}"
    r"(?:\s*(?:[\[({<]\s*dot\s*[\])}>]|\.)\s*[\w-]{1,63})+",
    re.IGNORECASE,
)
_TLDS = (
    "com|net|org|info|biz|io|co|ai|app|dev|shop|store|online|site|xyz|top|me|ly|gl|to|tv|cc|"
    "de|fr|uk|es|it|nl|be|ch|at|pl|ru|cn|jp|br|in|au|ca|us|eu"
)
_URL = re.compile(
    r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"')\]]+"
    r"|\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:" + _TLDS + r")\b(?:/[^\s<>\"')\]]*)?",
    re.IGNORECASE,
)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_STREET_EN = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
    r"Square|Sq|Highway|Hwy|Parkway|Pkwy|Circle|Cir|Crescent|Close|Gardens|Row|Alley"
)
_ADDRESS = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:(?:[NSEW]|North|South|East|West)\.?\s+)?(?:[A-Z][\w'’-]+\s+){1,3}"
    r"(?:" + _STREET_EN + r")\b\.?(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?(?:,?\s+(?:Apt|Suite|Unit|#)\.?\s*\w+)?"
    # German/Dutch/Scandinavian: name + street word, then the number.
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|platz|allee|gasse|ring|damm|ufer|straat|laan|gatan|vej)"
    r"\s+\d{1,4}\s?[a-z]?\b"
    # French/Spanish/Italian/Portuguese: number, street word, name.
    r"|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|calle|"
    r"avenida|plaza|paseo|via|viale|piazza|corso|rua|praça|travessa)\s+(?:(?:de|del|de la|des|du|della|da|do|"
    r"la|le|l')\s*)?[A-ZÀ-Ý][\w'’-]+"
    r"|\b(?i:calle|via|rua|avenida)\s+[A-ZÀ-Ý][\w'’-]+(?:\s+[A-ZÀ-Ý][\w'’-]+)?,?\s+(?:n[º°o.]\s*)?\d{1,4}\b"
    r"|\bP\.?\s?O\.?\s+Box\s+\d{1,8}\b"
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum card numbers carry; random digit runs pass it one time in ten."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str, kinds: Sequence[str] = ALL_KINDS, regions: Sequence[str] = ("US",)) -> list[Span]:
    """Non-overlapping PII spans in ``text``, earliest first (the longer one wins an overlap).

    Detection runs on the NFKC form without zero-width characters (fullwidth "ｊａｎｅ＠ｓｈｏｐ．ｃｏｍ",
    "jane@\u200bshop.com"); spans are mapped back to ``text``."""
    norm, index = _nfkc_map(text)
    return [
        Span(index[s.start], index[s.end - 1] + 1, s.kind, text[index[s.start] : index[s.end - 1] + 1])
        for s in _find(norm, kinds, regions)
    ]


def _nfkc_map(text: str) -> tuple[str, list[int]]:
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).translate(_ZERO_WIDTH):
            out.append(c)
            index.append(i)
    return "".join(out), index


def _find(text: str, kinds: Sequence[str], regions: Sequence[str]) -> list[Span]:
    found: list[Span] = []
    if "email" in kinds:
        found += [Span(m.start(), m.end(), "email", m.group()) for p in (_EMAIL, _EMAIL_OBF) for m in p.finditer(text)]
    if "url" in kinds:
        found += [
            Span(m.start(), m.end(), "url", m.group())
            for m in _URL.finditer(text)
            if not _inside_email(text, m.start(), m.end())
        ]
    if "card" in kinds:
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits):
                found.append(Span(m.start(), m.end(), "card", m.group()))
    if "phone" in kinds:
        found += _phones(text, regions)
    if "address" in kinds:
        found += [Span(m.start(), m.end(), "address", m.group().rstrip(".,")) for m in _ADDRESS.finditer(text)]
    found.sort(key=lambda s: (s.start, -(s.end - s.start)))
    out: list[Span] = []
    for span in found:
        if out and span.start < out[-1].end:
            continue
        out.append(span)
    return out


def _inside_email(text: str, start: int, end: int) -> bool:
    return "@" in text[max(0, start - 65) : start] and not re.search(
        r"\s", text[max(0, start - 65) : start].split("@")[-1]
    )


def _phones(text: str, regions: Sequence[str]) -> list[Span]:
    import phonenumbers  # lazy: 40 ms import, metadata loads per region on first use

    spans: dict[tuple[int, int], Span] = {}
    for region in dict.fromkeys(r.upper() for r in regions):
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            raw = match.raw_string
            digits = re.sub(r"\D", "", raw)
            # Bare digit runs (years, SKUs, sizes) are not phone numbers unless written like one.
            if not 7 <= len(digits) <= 15 or (raw.isdigit() and not raw.startswith("0")):
                continue
            # A tail of a longer digit group ("4111 [1111 1111 1112]") is not a number of its own.
            if re.search(r"\d[\s./-]?$", text[: match.start]):
                continue
            # Without an international prefix the number must be valid for the region, not merely possible.
            if not raw.startswith(("+", "00")) and not phonenumbers.is_valid_number(match.number):
                continue
            if _looks_like_measure(text, match.start, match.end) or _PRODUCT_CODE.search(text[: match.start]):
                continue
            spans[(match.start, match.end)] = Span(match.start, match.end, "phone", match.raw_string)
    return list(spans.values())


# Product identifiers are written like phone numbers (ISBN 978-3-16-148410-0) and are not PII.
_PRODUCT_CODE = re.compile(
    r"\b(?:ISBN(?:-1[03])?|EAN|GTIN|UPC|SKU|MPN|ASIN|Art(?:ikel)?\.?-?\s?Nr|Ref|Model|"
    r"Item|Part|Batch|Lot|Serial|S/N|Invoice|Order|Version|Ver)\.?\s*(?:no\.?|#|:)?\s*$",
    re.IGNORECASE,
)
_MEASURE_AFTER = re.compile(r"\s*(?:x|×|cm|mm|m|in|inch|ml|l|g|kg|%|€|\$|£)\b", re.IGNORECASE)


def _looks_like_measure(text: str, start: int, end: int) -> bool:
    """'30 x 40 x 50 cm' and prices are numbers, not phone numbers."""
    return bool(_MEASURE_AFTER.match(text, end)) or text[max(0, start - 1) : start] in ("$", "€", "£", "x", "×")


def mask_spans(text: str, spans: list[Span], mask: str) -> str:
    out, last = [], 0
    for span in spans:
        out.append(text[last : span.start])
        out.append(mask.replace("{kind}", span.kind))
        last = span.end
    out.append(text[last:])
    return "".join(out)


class PiiRule(Rule):
    name = "pii"
    config_model = PiiConfig
    stages = frozenset({"inputs", "output"})
    config: PiiConfig

    def _regions(self, locale: str) -> list[str]:
        parts = locale.replace("_", "-").split("-")
        region = next((p for p in parts[1:] if len(p) == 2 and p.isalpha()), None)
        return ([region.upper()] if region else []) + list(self.config.phone_regions)

    def check_input(self, text: str, source: str, ctx) -> RuleResult:
        kinds = [k for k in self.config.detect if k not in self.config.allow_in_prompt]
        spans = find_pii(text, kinds, self._regions(ctx.locale))
        if not spans:
            return self.allow(text, f"no PII in {source}", source=source)
        fixed = mask_spans(text, spans, self.config.mask)
        # Masking untrusted input before the prompt is always possible and never needs a regenerate.
        return self.violation(
            text,
            fixed,
            f"masked {_summary(spans)} in {source} before the prompt",
            None,
            wanted="redact",
            private=True,
            source=source,
            found=[s.kind for s in spans],
        )

    def check_output(self, text: str, ctx) -> RuleResult:
        spans = find_pii(text, self.config.detect, self._regions(ctx.locale))
        if not spans:
            return self.allow(text, f"no PII found (checked {', '.join(self.config.detect)})")
        fixed = tidy(mask_spans(text, spans, self.config.mask))
        return self.violation(
            text,
            fixed,
            f"caption contains {_summary(spans)}",
            ctx,
            feedback="do not include e-mail addresses, phone numbers, web addresses, card numbers or street addresses",
            private=True,
            found=[s.kind for s in spans],
        )


def _summary(spans: list[Span]) -> str:
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.kind] = counts.get(span.kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())
