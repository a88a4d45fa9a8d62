"""People: when faces are in the photo, captions do not guess identity, age, gender or ethnicity.

Gender-neutral mode rewrites gendered words the way hosted captioning APIs do ("a woman" -> "a person",
"she holds" -> "they hold"); age and ethnicity attached to a person are cut; a name from the catalog or from
text in the image (or any "Firstname Lastname" the caption puts on a person) is replaced by "a person".
English is rewritten in place; in other languages the terms are found and the caption is regenerated.
Product words such as "women's jacket" are kept.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from caption_agent.canonical import latin_words
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.schemas import PolicyDecision
from caption_agent.text import fold, tidy

_NEUTRAL = {
    "woman": "person",
    "man": "person",
    "lady": "person",
    "gentleman": "person",
    "guy": "person",
    "gal": "person",
    "women": "people",
    "men": "people",
    "ladies": "people",
    "gentlemen": "people",
    "guys": "people",
    "girl": "child",
    "boy": "child",
    "girls": "children",
    "boys": "children",
    "businessman": "businessperson",
    "businesswoman": "businessperson",
    "businessmen": "businesspeople",
    "businesswomen": "businesspeople",
    "actress": "actor",
    "waitress": "server",
    "waiter": "server",
    "mother": "parent",
    "father": "parent",
    "mom": "parent",
    "dad": "parent",
    "husband": "partner",
    "wife": "partner",
    "boyfriend": "partner",
    "girlfriend": "partner",
    "sportsman": "athlete",
    "sportswoman": "athlete",
    "spokesman": "spokesperson",
    "spokeswoman": "spokesperson",
    "policeman": "police officer",
    "policewoman": "police officer",
    "fireman": "firefighter",
    "chairman": "chair",
    "she": "they",
    "he": "they",
    "him": "them",
    "his": "their",
    "hers": "theirs",
    "herself": "themself",
    "himself": "themself",
    "female": "",
    "male": "",
}
_PERSON = (
    r"person|people|persons|individual|woman|women|man|men|lady|ladies|gentleman|gentlemen|guy|guys|girl|"
    r"girls|boy|boys|child|children|kid|kids|teen|teenager|adult|adults|model|worker|student|astronaut|"
    r"athlete|customer|shopper|couple|family|friends|musician|guitarist|pianist|artist|singer|dancer|player|"
    r"chef|cook|baker|doctor|nurse|teacher|employee|officer|soldier|farmer|driver|rider|runner|cyclist|"
    r"skier|surfer|hiker|tourist|traveller|traveler|professional|businessperson|actor"
)
_AGE = re.compile(
    r"\b(?:\d{1,3}[- ]years?[- ]old|(?:young|younger|old|older|elderly|aged|middle-aged|teenage|"
    r"adolescent|senior|mature|youthful|little|baby-faced)(?=\s+(?:\w+\s+)?(?:" + _PERSON + r")\b)"
    r"|in (?:his|her|their) (?:early |mid |late )?(?:\d0s|teens|twenties|thirties|forties|fifties|"
    r"sixties|seventies|eighties))\b",
    re.IGNORECASE,
)
_AGE_NOUNS = {
    "teenager": "person",
    "teenagers": "people",
    "elder": "person",
    "senior citizen": "person",
    "retiree": "person",
    "toddler": "child",
}
_ETHNIC = re.compile(
    r"\b(?:african[- ]american|asian|african|caucasian|hispanic|latino|latina|latinx|black|white|"
    r"brown-skinned|dark-skinned|light-skinned|fair-skinned|european|indian|arab|middle[- ]eastern|"
    r"native american|indigenous|chinese|japanese|korean|mexican|east asian|south asian)"
    r"(?=\s+(?:\w+\s+)?(?:" + _PERSON + r")\b)",
    re.IGNORECASE,
)
# Non-English: found, not rewritten (gender agreement makes a word swap wrong).
_OTHER = re.compile(
    r"\b(?:frau|mann|mädchen|junge|dame|herr|femme|homme|fille|garçon|mujer|hombre|chica|chico|"
    r"niña|niño|donna|uomo|ragazza|ragazzo|mulher|homem|menina|menino|junge frau|jung\w*|alt\w* "
    r"(?:frau|mann)|jeune|âgée?|vieille|vieux|joven|anciana?|giovane|anziana?|jovem|idosa?|"
    r"asiatisch\w*|afrikanisch\w*|asiatique|africaine?|asiático|asiática|africano|africana)\b",
    re.IGNORECASE,
)
_NAME_ON_PERSON = re.compile(
    r"\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)+)(?=\s*(?:,\s*(?:a|an|the)\s+(?:" + _PERSON + r")|"
    r"\s+(?:is\s+|was\s+)?(?:wearing|holding|smiling|posing|standing|sitting|looking|"
    r"walking|wears|holds|smiles|poses|stands|sits|looks|walks)\b))"
    r"|\b(?:named|called)\s+([A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)"
)
_KEEP = re.compile(
    r"\b(?:men|women|boys|girls|ladies)['’]s?(?!\w)|(?<=\bfor )(?:men|women|boys|girls|ladies)\b"
    r"|\b(?:men|women|boys|girls|ladies|unisex)"
    r"(?=\s+(?:size|sizes|fit|cut|collection|shoes?|jackets?|shirts?|clothing|wear)\b)",
    re.IGNORECASE,
)
# "Maria Lopez", "MARIA LOPEZ" (signs, labels): two capitalised words.
_PROPER_BIGRAM = re.compile(r"\b([A-Z][a-z]{1,20}\s+[A-Z][a-z]{1,20}|[A-Z]{2,20}\s+[A-Z]{2,20})\b")
# Capitalised pairs in catalog text that are not people ("Care Instructions", "Stainless Steel").
_NOT_NAME_WORDS = {
    "the",
    "and",
    "for",
    "with",
    "care",
    "size",
    "new",
    "free",
    "sale",
    "set",
    "edition",
    "collection",
    "mayor",
    "president",
    "street",
    "espresso",
    "coffee",
    "cup",
    "steel",
    "cotton",
    "leather",
    # Sentence-initial function words of the localized catalog text (German capitalises every noun, so
    # "Ein Integral-Motorradhelm" is a capitalised pair but no name).
    *"ein eine einen einem einer der die das den dem des mit aus fur für und oder im am zum zur von bei auf".split(),
    *"zwei drei vier fünf sechs sieben acht zehn zwölf".split(),  # "Vier Untertassen" opens a sentence
    *"le la les un une du et avec pour en el los las una unos unas del con para".split(),
}


# Catalog fields written in Title Case (and ids): not searched for names.
_TITLE_CASE_FIELDS = {"brand", "title", "category", "sku"}


def _name_gap(text: str, m: re.Match[str]) -> str:
    """What replaces a name: 'a person' as a subject; nothing when it was an apposition ("A person, X, ...")."""
    before = text[: m.start()].rstrip().lower()
    if m.group().startswith(",") and m.group().endswith(","):
        return " "
    return "a person" if not before.endswith(("a", "an", "the")) else "person"


class PeopleConfig(RuleConfig):
    action: Literal["allow", "redact", "regenerate", "fallback", "review", "block"] = "redact"
    on_exhausted: Literal["redact", "fallback", "review", "block"] = "review"
    on_draft: Literal["allow", "redact", "review", "block"] = "redact"
    gender: Literal["neutral", "allow"] = Field("neutral", description="neutral: rewrite gendered words.")
    age: Literal["remove", "allow"] = "remove"
    ethnicity: Literal["remove", "allow"] = "remove"
    identity: Literal["remove", "allow"] = Field("remove", description="Names put on people in the photo.")
    only_with_faces: bool = Field(True, description="Check only when the image safety rule counted faces.")
    if_unavailable: Literal["allow", "review", "block"] = Field(
        "review",
        description="With only_with_faces, when faces were not counted (the person detector is not "
        "installed, failed or is disabled): review holds the caption for a person, allow lets it through "
        "unchecked.",
    )


class PeopleRule(Rule):
    name = "people"
    config_model = PeopleConfig
    order = 60
    required = True
    stages = frozenset({"output"})
    config: PeopleConfig

    def _names(self, ctx) -> list[str]:
        """Person-like names in untrusted text (catalog prose, image text); brands are not names.

        Titles and categories are left out: they are Title Case by convention, so every word pair in them looks
        like a name ("Rocket Launch Model Kit" is no person).
        """
        brands = {fold(str(v)) for f in ctx.facts for k, v in f.fields.items() if k == "brand"}
        texts = (
            [f.text for f in ctx.facts if f.field not in _TITLE_CASE_FIELDS]
            + [str(v) for f in ctx.facts for k, v in f.fields.items() if k.rsplit(".", 1)[-1] not in _TITLE_CASE_FIELDS]
            + [ctx.image_text]
        )
        found = {m.title() for t in texts for m in _PROPER_BIGRAM.findall(t)}
        # A pair that shares a word with the product's own title (in any locale) is the product, not a person:
        # "Kurze Motorradhandschuhe" opening the de-DE description of "Redline Motorradhandschuhe aus Leder".
        titled = {
            fold(w)
            for f in ctx.facts
            for k, v in [*f.fields.items(), (f.field, f.text)]
            if k.rsplit(".", 1)[-1] == "title"
            for w in re.findall(r"\w{4,}", str(v))
        }
        found = {n for n in found if not set(fold(n).split()) & titled}
        # A pair the catalog also writes with a lower-case word is a common noun, not a person ("Flat White" in a
        # German description, where every noun is capitalised, is "flat white" in the English one; "French press").
        lower = {
            n
            for n in found
            for t in texts
            for m in re.finditer(r"\b" + re.escape(n) + r"\b", t, re.IGNORECASE)
            if any(w[:1].islower() for w in m.group().split())
        }
        return sorted(
            (n for n in found - lower if fold(n) not in brands and not (set(fold(n).split()) & _NOT_NAME_WORDS)),
            key=len,
            reverse=True,
        )

    def check_output(self, text: str, ctx) -> RuleResult:
        cfg = self.config
        if cfg.only_with_faces and ctx.faces is None:
            return self._unavailable(text)
        if cfg.only_with_faces and ctx.faces <= 0:
            return self.allow(text, "no faces detected; not checked")
        faces = "faces not counted" if ctx.faces is None else f"{ctx.faces} face(s)"
        english = ctx.locale.lower().startswith("en")
        problems: list[str] = []
        # Read spoofed words as the English words they show ("wоman" with a Cyrillic о, small capitals, invisible
        # characters inside): the rewrite starts from that reading; nothing changes when nothing is found.
        fixed = latin_words(text) if english else text
        if cfg.identity == "remove":
            for name in self._names(ctx):
                pattern = re.compile(r"(?:,\s*)?\b" + re.escape(name) + r"(?:['’]s)?\b(?:\s*,)?", re.IGNORECASE)
                if pattern.search(fixed):
                    problems.append(f"name from catalog/image text {name!r}")
                    fixed = pattern.sub(lambda m: _name_gap(fixed, m), fixed)
            for m in list(_NAME_ON_PERSON.finditer(fixed)):
                name = m.group(1) or m.group(2)
                if fold(name) not in {fold(str(v)) for f in ctx.facts for v in f.fields.values()}:
                    problems.append(f"identity {name!r}")
                    fixed = fixed.replace(name, "a person" if m.group(1) else "", 1)
            fixed = re.sub(r"(^|[.!?]\s+)a person", lambda m: m.group(1) + "A person", fixed)
        if cfg.age == "remove":
            for m in _AGE.finditer(fixed):
                problems.append(f"age {m.group()!r}")
            fixed = _AGE.sub("", fixed)
            for word, repl in _AGE_NOUNS.items():
                fixed, n = re.subn(rf"\b{word}\b", repl, fixed, flags=re.IGNORECASE)
                problems += [f"age {word!r}"] * n
        if cfg.ethnicity == "remove":
            problems += [f"ethnicity {m.group()!r}" for m in _ETHNIC.finditer(fixed)]
            fixed = _ETHNIC.sub("", fixed)
        if cfg.gender == "neutral":
            fixed, found = _neutralise(fixed)
            problems += [f"gender {w!r}" for w in found]
        if not english:
            found = [m.group() for m in _OTHER.finditer(text)]
            if found:
                problems += [f"person attribute {w!r}" for w in found]
                return self.violation(
                    text,
                    None,
                    "people: " + "; ".join(problems),
                    ctx,
                    wanted="regenerate" if cfg.action == "redact" else cfg.action,
                    feedback="do not state the gender, age, ethnicity or name of people in the photo; say 'person'",
                    faces=ctx.faces,
                )
        if not problems:
            return self.allow(text, f"{faces}; no identity, age, gender or ethnicity stated")
        return self.violation(
            text,
            tidy(fixed) if english else None,
            "people: " + "; ".join(problems),
            ctx,
            feedback="do not state the gender, age, ethnicity or name of people in the photo",
            faces=ctx.faces,
        )

    def _unavailable(self, text: str) -> RuleResult:
        """Faces were not counted: "no faces" is not known, so the policy's if_unavailable decides."""
        action = self.config.if_unavailable
        what = {"allow": "not checked (if_unavailable: allow)", "review": "held for review", "block": "blocked"}
        reason = f"person detector unavailable (install caption-agent[safety]); {what[action]}"
        return RuleResult(
            [PolicyDecision(rule=self.name, action=action, reason=reason, details={"faces": None, "skipped": True})],
            text,
        )


def _neutralise(text: str) -> tuple[str, list[str]]:
    """English gender-neutral rewrite with verb agreement after 'they'."""
    keep = [(m.start(), m.end()) for m in _KEEP.finditer(text)]
    found: list[str] = []

    def swap(m: re.Match[str]) -> str:
        word = m.group()
        if any(a <= m.start() < b for a, b in keep):
            return word
        repl = _NEUTRAL.get(word.lower(), "")
        if word.lower() == "her":
            repl = (
                "their"
                if re.match(r"\s+[a-z]", text[m.end() :])
                and not re.match(r"\s+(?:and|with|in|on|at|to|while|as|by)\b", text[m.end() :])
                else "them"
            )
        found.append(word)
        if word[0].isupper() and repl:
            repl = repl[0].upper() + repl[1:]
        # Mark pronouns that were "she"/"he" so that only their verbs are put into the plural.
        return "\x00" + repl if word.lower() in ("she", "he") else repl

    words = "|".join(sorted([*_NEUTRAL, "her"], key=len, reverse=True))
    out = re.sub(rf"\b(?:{words})\b", swap, text, flags=re.IGNORECASE)
    # "she is/has/was/smiles" -> "they are/have/were/smile": only after a swapped pronoun.
    irregular = {"is": "are", "was": "were", "has": "have", "does": "do"}

    def agree(m: re.Match[str]) -> str:
        pronoun, adverb, verb = m.group(1), m.group(2) or "", m.group(3)
        low = verb.lower()
        if low in irregular:
            verb = irregular[low]
        elif low not in _NOT_VERBS and re.search(r"[^s]s$", low):
            verb = re.sub(
                r"(?:(?<=[^aeiou])ies|(?<=ch|sh)es|(?<=ss)es|(?<=x)es|(?<=[^s])s)$",
                lambda e: "y" if e.group() == "ies" else "",
                verb,
            )
        return f"{pronoun} {adverb}{verb}"

    out = re.sub(r"\x00(\w+) ((?:also |always |often |now |still )?)(\w+)", agree, out)
    out = out.replace("\x00", "")
    return out, found


_NOT_VERBS = {
    "always",
    "sometimes",
    "perhaps",
    "across",
    "plus",
    "less",
    "unless",
    "thus",
    "yes",
    "its",
    "us",
    "this",
    "as",
    "his",
    "hers",
    "has",
    "is",
    "was",
    "does",
}
