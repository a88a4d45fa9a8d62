"""Grounding: colours, materials, brands/names, sizes and numbers in the caption must be supported.

A claim is supported when the draft, a retrieved fact (its text or a structured field) or, if the policy says
so, the text read from the image states it. Colours and materials are compared as concepts across languages
(the policy's lexicon maps "rot", "rouge" and "red" to one concept, and "navy" may support "blue"), numbers as
values ("1,5 l" = "1.5 l"). Every claim is listed in the decision with what supports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, get_args

from pydantic import Field, model_validator

from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.text import fold, skeleton_map, tidy

ClaimKind = Literal["colour", "material", "name", "number", "size"]
_SUFFIXES = r"(?:e|er|es|en|em|s|a|as|os|o|i|n)?"
_UNITS = (
    r"%|mm|cm|km|m|in|inch(?:es)?|ft|\"|ml|cl|dl|l|litres?|liters?|g|kg|mg|oz|lbs?|gb|tb|mb|mah|w|kw|v|mp|hz|"
    r"ghz|k|ct|karat|carat|pcs|pieces?|pack|x"
)
# A number, grouped by marks or by (no-break) spaces as locales write them ("2 200 W" in fr-FR); a CJK unit may
# follow without a space ("1.5升").
_NUMBER = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)*)(?:\s?(" + _UNITS + r"))?"
    r"(?![0-9A-Za-z\u00c0-\u024f])",
    re.IGNORECASE,
)
_SIZE = re.compile(
    r"\b(?:size|gr(?:ö|oe|o)(?:ß|ss)e|taille|talla|taglia|tamanho|maat)\s*:?\s*"
    r"((?:[2-5]?X{0,3}[SML])|XXS|XS)\b|\b(XXS|XS|XL|XXL|XXXL|[2-5]XL)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_][\w'’&.-]*[\w]|[^\W\d_]")
_SENT_END = re.compile(r"[.!?:;]\s*$|^\s*$")


class GroundingConfig(RuleConfig):
    action: Literal["allow", "redact", "regenerate", "fallback", "review", "block"] = "regenerate"
    on_exhausted: Literal["redact", "fallback", "review", "block"] = "redact"
    on_draft: Literal["allow", "redact", "review", "block"] = "redact"
    kinds: list[ClaimKind] = Field(
        default_factory=lambda: list(get_args(ClaimKind)), description="Kinds of claims checked."
    )
    lexicon: dict[Literal["colour", "material"], dict[str, list[str]]] = Field(
        default_factory=dict,
        description="kind -> concept -> surface forms in any language; a trailing '*' "
        "also matches compounds that start with the form (German 'Leder*' in 'Ledertasche').",
    )
    broader: dict[str, list[str]] = Field(
        default_factory=dict, description="concept -> broader concepts it supports ('navy': [blue])."
    )
    number_words: dict[str, int] = Field(default_factory=dict, description="Spelled-out numbers ('two': 2).")
    brands: list[str] = Field(default_factory=list, description="Brand names always treated as claims.")
    proper_noun_languages: list[str] = Field(
        default_factory=lambda: ["en", "fr", "es", "it", "pt", "nl"],
        description="Languages in which a capitalised word inside a sentence is taken as a name claim "
        "(not German, which capitalises every noun).",
    )
    not_names: list[str] = Field(default_factory=list, description="Capitalised words that are not names.")
    support_from_image_text: bool = Field(True, description="Text read from the image may support a claim.")

    @model_validator(mode="after")
    def _not_empty(self) -> GroundingConfig:
        if self.enabled and not self.kinds:
            raise ValueError("kinds is empty: the rule would do nothing; list kinds or set enabled: false")
        missing = [k for k in ("colour", "material") if k in self.kinds and not self.lexicon.get(k)]
        if self.enabled and missing:
            raise ValueError(f"kinds includes {missing} but lexicon has no entries for them")
        return self


@dataclass(frozen=True)
class Claim:
    kind: str
    concept: str
    start: int
    end: int
    text: str


class GroundingRule(Rule):
    name = "grounding"
    config_model = GroundingConfig
    order = 70
    required = True
    stages = frozenset({"output"})
    config: GroundingConfig

    @staticmethod
    def number_values(raw: str) -> set[float]:
        """The values a number claim ("1,5 l", "1.5", "½") stands for, as the rule compares them (public: the
        grounding evaluation counts numbers the same way)."""
        return _number_values(raw)

    @cached_property
    def _lexicon(self) -> list[tuple[str, re.Pattern[str], dict[str, str]]]:
        """Per kind: one regex over folded text, and folded form -> concept."""
        out: list[tuple[str, re.Pattern[str], dict[str, str]]] = []
        for kind, concepts in self.config.lexicon.items():
            form_to_concept: dict[str, str] = {}
            alts = []
            for concept, forms in concepts.items():
                for form in [concept, *forms]:
                    prefix = form.endswith("*")
                    key = fold(form.rstrip("*"))
                    form_to_concept[key] = concept
                    body = r"\s+".join(re.escape(p) for p in key.split())
                    # Inflection endings only on longer forms: "lin" + "e" would read English "line" as linen.
                    alts.append((len(key), body + (r"\w*" if prefix else _SUFFIXES if len(key) >= 4 else "")))
            alts.sort(reverse=True)  # longest first: "stainless steel" before "steel"
            pattern = re.compile(r"(?<!\w)(?:" + "|".join(a for _, a in alts) + r")(?!\w)")
            out.append((kind, pattern, form_to_concept))
        return out

    @cached_property
    def _number_words(self) -> re.Pattern[str] | None:
        words = sorted(map(fold, self.config.number_words), key=len, reverse=True)
        return re.compile(r"(?<!\w)(" + "|".join(map(re.escape, words)) + r")(?!\w)") if words else None

    def claims(self, text: str, locale: str = "en", names: bool = True) -> list[Claim]:
        """Every claim of the configured kinds in ``text``, in order."""
        folded, index = skeleton_map(text, leet=False)
        found: list[Claim] = []
        kinds = self.config.kinds

        def add(kind: str, concept: str, a: int, b: int) -> None:
            start, end = index[a], index[b - 1] + 1
            found.append(Claim(kind, concept, start, end, text[start:end]))

        for kind, pattern, forms in self._lexicon:
            if kind in kinds:
                for m in pattern.finditer(folded):
                    add(kind, self._concept(m.group(), forms), m.start(), m.end())
        if "size" in kinds:
            for m in _SIZE.finditer(text):
                found.append(Claim("size", "size:" + (m.group(1) or m.group(2)).upper(), m.start(), m.end(), m.group()))
        if "number" in kinds:
            for m in _NUMBER.finditer(text):
                found.append(Claim("number", _number_key(m.group(1)), m.start(), m.end(), m.group()))
            if self._number_words is not None:
                for m in self._number_words.finditer(folded):
                    add(
                        "number",
                        str(self.config.number_words.get(m.group(), _lookup(self.config.number_words, m.group()))),
                        m.start(),
                        m.end(),
                    )
        if "name" in kinds and names:
            found += self._names(text, locale)
        found.sort(key=lambda c: (c.start, -(c.end - c.start)))
        out: list[Claim] = []
        for claim in found:
            if not out or claim.start >= out[-1].end:
                out.append(claim)
        return out

    @staticmethod
    def _concept(matched: str, forms: dict[str, str]) -> str:
        key = re.sub(r"\s+", " ", matched)
        if key in forms:
            return forms[key]
        # Inflected ("rote") or compound ("ledertasche"): the longest form it starts with.
        best = max((f for f in forms if key.startswith(f)), key=len, default=key)
        return forms.get(best, key)

    def _names(self, text: str, locale: str) -> list[Claim]:
        """Brand/name claims: known brands, ALL-CAPS and ™/® words anywhere; in languages that capitalise only
        names, capitalised words too (a sentence's first word only when a capitalised word follows it)."""
        capitalising = locale.split("-")[0].lower() in self.config.proper_noun_languages
        known = {fold(b) for b in self.config.brands}
        skip = {fold(w) for w in self.config.not_names} | {f for _, _, forms in self._lexicon for f in forms}
        runs: list[list[tuple[re.Match[str], bool, bool]]] = []  # (word, sentence-initial, strong)
        prev_end = -2
        for m in _WORD.finditer(text):
            word, key = m.group(), fold(m.group())
            strong = (
                key in known
                or text[m.end() : m.end() + 1] in ("™", "®")
                or (len(word) >= 2 and word.isupper() and not _SIZE.fullmatch(word) and key not in skip)
            )
            cap = word[0].isupper() and key not in skip
            if not (strong or (cap and capitalising)):
                prev_end = -2
                continue
            entry = (m, bool(_SENT_END.search(text[: m.start()])), strong)
            if runs and text[prev_end : m.start()] == " ":
                runs[-1].append(entry)
            else:
                runs.append([entry])
            prev_end = m.end()
        claims = []
        for run in runs:
            if run[0][1] and not run[0][2]:
                run = run[1:]  # a sentence's first word is capitalised anyway
            if not run:
                continue
            a, b = run[0][0].start(), run[-1][0].end()
            claims.append(Claim("name", fold(text[a:b]), a, b, text[a:b]))
        return claims

    def index(self, ctx) -> list[tuple[str, str, dict[str, set[str]], set[float]]]:
        """Per source: (id, folded text, kind -> concepts incl. broader ones, number values). Built once per
        check; injected instructions in facts are cut out first, so they support nothing."""
        out = []
        for source, text in ctx.sources(image_text=self.config.support_from_image_text, trusted_only=True):
            kinds: dict[str, set[str]] = {}
            values: set[float] = set()
            for c in self.claims(text, ctx.locale, names=False):
                kinds.setdefault(c.kind, set()).add(c.concept)
                if c.kind == "number":
                    values |= _number_values(c.concept)
            for kind in ("colour", "material"):
                found = kinds.get(kind, set())
                kinds[kind] = found | {b for c in found for b in self.config.broader.get(c, [])}
            out.append((source, fold(text), kinds, values))
        return out

    def support(self, claim: Claim, ctx, index: list | None = None) -> list[str]:
        """Ids of the sources that state ``claim``."""
        out = []
        for source, folded, kinds, values in index if index is not None else self.index(ctx):
            if claim.kind == "name":
                hit = re.search(r"(?<!\w)" + re.escape(claim.concept) + r"(?!\w)", folded) is not None
            elif claim.kind == "number":
                hit = bool(_number_values(claim.concept) & values)
            else:
                hit = claim.concept in kinds.get(claim.kind, set())
            if hit:
                out.append(source)
        return out

    def check_output(self, text: str, ctx) -> RuleResult:
        claims = self.claims(text, ctx.locale)
        index = self.index(ctx) if claims else []
        listed = [
            {"claim": c.text, "kind": c.kind, "concept": c.concept, "supported_by": self.support(c, ctx, index)}
            for c in claims
        ]
        unsupported = [c for c, row in zip(claims, listed) if not row["supported_by"]]
        if not unsupported:
            return self.allow(text, f"all {len(claims)} claim(s) supported", claims=listed)
        fixed = _cut(text, unsupported, claims)
        names = ", ".join(repr(c.text) for c in unsupported)
        return self.violation(
            text,
            fixed,
            f"unsupported claim(s): {names}",
            ctx,
            feedback=f"remove details the draft and facts do not state: {names}",
            claims=listed,
            unsupported=[c.text for c in unsupported],
        )


def _lookup(table: dict[str, int], folded: str) -> int:
    return next(v for k, v in table.items() if fold(k) == folded)


def _number_key(raw: str) -> str:
    return re.sub(r"[ \u00a0\u202f]", "", raw)  # "2 200" is 2200


def _number_values(raw: str) -> set[float]:
    """Readings of a written number: '1,500' is 1500 (en) or 1.5 (de); '1.5' is 1.5 or 15 hundreds never."""
    raw = raw.strip()
    if re.fullmatch(r"\d+", raw):
        return {float(raw)}
    values = set()
    for thousands, decimal in ((",", "."), (".", ",")):
        parts = raw.split(decimal)
        if len(parts) > 2:
            continue
        whole = parts[0].split(thousands)
        if len(whole) > 1 and not all(len(g) == 3 for g in whole[1:]):
            continue
        try:
            values.add(float("".join(whole) + ("." + parts[1] if len(parts) == 2 else "")))
        except ValueError:
            continue
    return values


_CONJ = re.compile(r"(?:\s*,\s*|\s+(?:and|or|und|oder|et|ou|y|o|e)\s+)$", re.IGNORECASE)
_CONJ_AFTER = re.compile(r"^(?:\s*,\s*|\s+(?:and|or|und|oder|et|ou|y|o|e)\s+)", re.IGNORECASE)
_LEAD_IN = re.compile(r"(?:\b(?:size|made of|made from|in|from|of)\s+)$", re.IGNORECASE)


def _cut(text: str, remove: list[Claim], all_claims: list[Claim]) -> str:
    """Cut unsupported claims with the comma/conjunction that tied them to a neighbour of the same kind."""
    spans = []
    for claim in remove:
        a, b = claim.start, claim.end
        before, after = text[:a], text[b:]
        conj_b, conj_a = _CONJ.search(before), _CONJ_AFTER.match(after)
        left = conj_b and any(c.kind == claim.kind and c.end == conj_b.start() for c in all_claims)
        right = conj_a and any(c.kind == claim.kind and c.start == b + conj_a.end() for c in all_claims)
        if left and conj_b:
            a = conj_b.start()
        elif right and conj_a:
            b = b + conj_a.end()
        elif claim.kind == "size":
            lead = _LEAD_IN.search(before)
            a = lead.start() if lead else a
        spans.append((a, b))
    out, last = [], 0
    for a, b in sorted(spans):
        if a < last:
            a = last
        out.append(text[last:a])
        last = max(last, b)
    out.append(text[last:])
    return tidy("".join(out))
