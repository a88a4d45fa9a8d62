"""PII: e-mail addresses, phone numbers, URLs, IBANs, card numbers and street addresses.

Masked in captions, and in catalog rows and image text before they reach the LLM unless the policy allows a
kind there. Phone numbers are found with libphonenumber (``phonenumbers``), which knows every country's formats;
the other kinds are in ``pii_patterns``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import Field, model_validator

from caption_agent.canonical import canonical
from caption_agent.policies.rules import pii_patterns as pat
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.policies.rules.pii_patterns import gtin_ok, iban_ok, luhn_ok
from caption_agent.text import tidy

__all__ = ["ALL_KINDS", "PiiConfig", "PiiRule", "Span", "find_pii", "iban_ok", "luhn_ok", "mask_spans"]

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.policies.context import ModerationContext

# Label separators of domain names besides "." (IDNA / UTS #46): the ideographic full stop and its half-width form.
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff61": ".", "\ufe52": "."})
Kind = Literal["email", "phone", "url", "card", "address", "iban"]
ALL_KINDS: tuple[Kind, ...] = ("email", "url", "iban", "card", "phone", "address")
EmailWords = tuple[Sequence[str], Sequence[str]]


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
    email_at_words: list[str] = Field(
        default_factory=lambda: list(pat.AT_WORDS),
        description="Words written for '@' in spelt-out addresses ('anna at shop dot com', 'arobase').",
    )
    email_dot_words: list[str] = Field(
        default_factory=lambda: list(pat.DOT_WORDS),
        description="Words written for '.' in spelt-out addresses ('dot', 'punkt', 'point', 'punto').",
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


def find_pii(
    text: str,
    kinds: Sequence[str] = ALL_KINDS,
    regions: Sequence[str] = ("US",),
    words: EmailWords = (pat.AT_WORDS, pat.DOT_WORDS),
) -> list[Span]:
    """Non-overlapping PII spans in ``text``, earliest first (the longer one wins an overlap).

    Detection runs on the canonical form (agent.canonical: NFKC, invisible characters removed, so fullwidth
    "ｊａｎｅ＠ｓｈｏｐ．ｃｏｍ" and "jane@\u2063shop.com" are found) with ideographic full stops read as dots
    ("sales@shop。com"); spans are mapped back to ``text`` and cover the invisible characters inside them."""
    form = canonical(text)
    found = []
    for s in _find(form.text.translate(_IDNA_DOTS), kinds, regions, words):
        a, b = form.raw_span(s.start, s.end)
        found.append(Span(a, b, s.kind, text[a:b]))
    if form.text.split() != text.split():  # and the text exactly as it will be published, where it differs
        found += [Span(s.start, s.end, s.kind, text[s.start : s.end]) for s in _find(text, kinds, regions, words)]
    return _merge(found)


def _find(text: str, kinds: Sequence[str], regions: Sequence[str], words: EmailWords) -> list[Span]:
    found: list[Span] = []
    if "email" in kinds:
        found += [Span(s, e, "email", text[s:e]) for s, e in pat.emails(text, *words)]
    if "url" in kinds:
        found += [Span(s, e, "url", text[s:e]) for s, e in pat.urls(text) if not pat.inside_email(text, s)]
    if "iban" in kinds:
        found += [Span(s, e, "iban", text[s:e]) for s, e in pat.ibans(text)]
    if "card" in kinds:
        found += [Span(s, e, "card", text[s:e]) for s, e in pat.cards(text, _PRODUCT_CODE)]
    if "phone" in kinds:
        found += _phones(text, regions)
    if "address" in kinds:
        found += [Span(s, e, "address", text[s:e]) for s, e in pat.addresses(text)]
    return _merge(found)


def _merge(found: list[Span]) -> list[Span]:
    """Non-overlapping spans, earliest first; the longer one wins an overlap."""
    found = sorted(found, key=lambda s: (s.start, -(s.end - s.start)))
    out: list[Span] = []
    for span in found:
        if out and span.start < out[-1].end:
            continue
        out.append(span)
    return out


def _phones(text: str, regions: Sequence[str]) -> list[Span]:
    import phonenumbers  # lazy: 40 ms import, metadata loads per region on first use

    spans: dict[tuple[int, int], Span] = {}
    for region in dict.fromkeys(r.upper() for r in regions):
        # With an international prefix a possible number is enough. A national number must be valid for the
        # region and grouped the way the region writes its numbers ("030/1234567", "06 12 34 56 78", "(11)
        # 91234-5678"): dates, IKEA article numbers (802.758.87) and batch codes are grouped otherwise.
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            raw = match.raw_string
            if not _phone_like(text, match):
                continue
            if not raw.startswith(("+", "00")) and not any(
                m.raw_string == raw
                for m in phonenumbers.PhoneNumberMatcher(raw, region, leniency=phonenumbers.Leniency.STRICT_GROUPING)
            ):
                continue
            spans[(match.start, match.end)] = Span(match.start, match.end, "phone", raw)
    return list(spans.values())


def _phone_like(text: str, match: Any) -> bool:
    raw = match.raw_string
    digits = re.sub(r"\D", "", raw)
    # Bare digit runs (years, SKUs, sizes) are not phone numbers unless written like one; nor are barcodes.
    if not 7 <= len(digits) <= 15 or (raw.isdigit() and (not raw.startswith("0") or gtin_ok(raw))):
        return False
    # Part of a longer digit group ("4111 [1111 1111 1112]", "0 [36000 29145] 2") or of a code ("B2301-...").
    if re.search(r"(?:\d[\s./-]?|[A-Za-z])$", text[: match.start]):
        return False
    if re.match(r"[\s./-]?\d|[A-Za-z]", text[match.end :]):
        return False
    return not (_looks_like_measure(text, match.start, match.end) or _PRODUCT_CODE.search(text[: match.start]))


# Product identifiers are written like phone numbers (ISBN 978-3-16-148410-0) and are not PII.
_PRODUCT_CODE = re.compile(
    r"\b(?:ISBN(?:-1[03])?|EAN|GTIN(?:-1[0-4])?|UPC|SKU|MPN|ASIN|Art(?:ikel)?\.?-?\s?(?:Nr)?|R[eé]f(?:[eé]rence)?|"
    r"Model[lo]?|Mod[eè]le|Item|Part|Batch|Lot|Charge|Serial|S/?N|Invoice|Order|Version|Ver|HS(?:\s?code)?|RAL|"
    r"Pantone)\.?\s*"
    r"(?:no\.?|#|:)?\s*$",
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
    order = 40
    required = True
    stages = frozenset({"inputs", "output"})
    config: PiiConfig

    def _regions(self, locale: str) -> list[str]:
        parts = locale.replace("_", "-").split("-")
        region = next((p for p in parts[1:] if len(p) == 2 and p.isalpha()), None)
        return ([region.upper()] if region else []) + list(self.config.phone_regions)

    def find(self, text: str, kinds: Sequence[str], locale: str) -> list[Span]:
        """``find_pii`` with this policy's regions and spelt-out e-mail words."""
        words = (self.config.email_at_words, self.config.email_dot_words)
        return find_pii(text, kinds, self._regions(locale), words)

    def check_input(self, text: str, source: str, ctx: ModerationContext) -> RuleResult:
        kinds = [k for k in self.config.detect if k not in self.config.allow_in_prompt]
        spans = self.find(text, kinds, ctx.locale)
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

    def check_output(self, text: str, ctx: ModerationContext) -> RuleResult:
        spans = self.find(text, self.config.detect, ctx.locale)
        if not spans:
            return self.allow(text, f"no PII found (checked {', '.join(self.config.detect)})")
        fixed = tidy(mask_spans(text, spans, self.config.mask))
        return self.violation(
            text,
            fixed,
            f"caption contains {_summary(spans)}",
            ctx,
            feedback="do not include e-mail addresses, phone numbers, web addresses, bank account or card numbers or "
            "street addresses",
            private=True,
            found=[s.kind for s in spans],
        )


def _summary(spans: list[Span]) -> str:
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.kind] = counts.get(span.kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())
