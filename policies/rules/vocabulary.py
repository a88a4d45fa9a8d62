"""Words the trust rules read captions with: WordNet names (English), the lexicon's names (other languages),
the catalog's own text and a few function words per language (``policies/vocabulary.yaml``).

English object names come from the WordNet 3.0 table the lite drafter hedges with
(``drafters/data/wordnet_imagenet.tsv``): every lemma of every synset above the ImageNet classes, so a caption's
"cat" and "animal" are both found, with the synsets they may mean. Names in other languages come only from the
hand-written lexicon (``prompts/compose/lexicon.yaml``), never from a translation.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from caption_agent.drafters.hedging import PERSON, hierarchy
from caption_agent.locales import language_code
from caption_agent.refiners.subject import load_lexicon, read_subject
from caption_agent.retrieval.i18n import localized_fields
from caption_agent.text import fold

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
# Categories above this many ImageNet classes are too general to name a subject ("artifact", "whole", "object"),
# unless the basic-level vocabulary lists them ("an animal").
_GENERAL = 300


@lru_cache(maxsize=1)
def data() -> dict[str, Any]:
    """``policies/vocabulary.yaml``: function, scene and vague words, plural endings and synonyms per language."""
    path = Path(str(resources.files("caption_agent.policies") / "vocabulary.yaml"))
    # BaseLoader: every word stays a string (YAML 1.1 would read "no", "on" and "off" as booleans).
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}  # noqa: S506 - plain strings


def words(text: str) -> list[str]:
    """The words of ``text``, folded (lower case, accents kept apart by ``fold``)."""
    return [fold(w) for w in WORD.findall(text or "")]


@lru_cache(maxsize=64)  # per language: the words are folded once, not on every check
def function_words(lang: str) -> frozenset[str]:
    return frozenset(fold(w) for w in data().get("function_words", {}).get(lang, []))


@lru_cache(maxsize=64)  # per language: the words are folded once, not on every check
def vague_words(lang: str) -> frozenset[str]:
    """Words that describe a picture without naming anything in it ("scene", "tones", colour names)."""
    return frozenset(fold(w) for w in data().get("vague_words", {}).get(lang, []))


@lru_cache(maxsize=64)  # per language: the words are folded once, not on every check
def object_words(lang: str) -> frozenset[str]:
    return frozenset(fold(w) for w in data().get("object_words", {}).get(lang, []))


@lru_cache(maxsize=64)  # per language: the words are folded once, not on every check
def scene_words(lang: str) -> frozenset[str]:
    return frozenset(fold(w) for w in data().get("scene_words", {}).get(lang, []))


@lru_cache(maxsize=1)
def _lemmas() -> tuple[dict[str, frozenset[str]], int]:
    """English lemma (folded, words joined by one space) -> the synsets it may name; and the longest lemma's words."""
    tree = hierarchy()
    out: dict[str, set[str]] = {}
    for wnid in tree.parents:
        for lemma in _all_lemmas(wnid):
            key = " ".join(words(lemma))
            if key:
                out.setdefault(key, set()).add(wnid)
    for wnid, phrase in tree.phrases.items():
        key = " ".join(w for w in words(phrase) if w not in ("a", "an"))
        out.setdefault(key, set()).add(wnid)
    longest = max(len(k.split()) for k in out)
    return {k: frozenset(v) for k, v in out.items()}, longest


@lru_cache(maxsize=1)
def _table_lemmas() -> dict[str, tuple[str, ...]]:
    table = (resources.files("caption_agent") / "drafters" / "data" / "wordnet_imagenet.tsv").read_text(
        encoding="utf-8"
    )
    out = {}
    for line in table.splitlines():
        if line and not line.startswith("#"):
            wnid, _, lemmas, _ = line.split("\t")
            out[wnid] = tuple(lemmas.split(","))
    return out


def _all_lemmas(wnid: str) -> tuple[str, ...]:
    return _table_lemmas().get(wnid, ())


@lru_cache(maxsize=1)
def _below() -> dict[str, int]:
    """Number of ImageNet classes under each synset."""
    tree = hierarchy()
    count: dict[str, int] = {}
    for leaf in tree.classes:
        for node in tree.ancestors(leaf):
            count[node] = count.get(node, 0) + 1
    return count


def is_specific(wnid: str) -> bool:
    """True when ``wnid`` names something a reader can picture (not "artifact", "whole", "object")."""
    return wnid in hierarchy().phrases or wnid == PERSON or _below().get(wnid, 0) <= _GENERAL


def _singular(word: str) -> list[str]:
    forms = [word]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s"):
        forms.append(word[:-1])
    if word in ("people", "men", "women", "children"):
        forms.append({"people": "person", "men": "man", "women": "woman", "children": "child"}[word])
    return forms


_MASKS = re.compile(r"\[[^\]]{1,40}\]")  # what the policy masked or cut ([email], [instruction removed])
_PEOPLE = frozenset(
    "man men woman women boy boys girl girls child children kid kids adult adults astronaut astronauts officer "
    "officers soldier soldiers sailor sailors pilot pilots worker workers player players athlete athletes".split()
)


def english_names(text: str) -> dict[str, frozenset[str]]:
    """Object names an English ``text`` states (longest match first, plurals too): phrase -> synsets. Words for
    people ("woman", "children") name a person; the policy's masks ("[phone]") name nothing."""
    index, longest = _lemmas()
    tokens = words(_MASKS.sub(" ", text))
    found: dict[str, frozenset[str]] = {}
    i = 0
    while i < len(tokens):
        for n in range(min(longest, len(tokens) - i), 0, -1):
            head, last = tokens[i : i + n - 1], tokens[i + n - 1]
            hit = next((" ".join([*head, f]) for f in _singular(last) if " ".join([*head, f]) in index), None)
            if hit is not None:
                found[hit] = index[hit]
                i += n
                break
        else:
            if tokens[i] in _PEOPLE:
                found[tokens[i]] = frozenset({PERSON})
            i += 1
    return found


def is_listed(wnid: str) -> bool:
    """True for the curated basic-level names (COCO / Open Images) and people: the objects a caption may be held
    for adding (rarer WordNet lemmas such as "light", "pick" or "mail" are too ambiguous to hold a caption for)."""
    return wnid in hierarchy().phrases or wnid == PERSON


def related(claimed: frozenset[str], subject: set[str]) -> bool:
    """True when one synset of ``claimed`` is one of ``subject``, a hypernym or a hyponym of one ("tabby cat" and
    "animal" both keep "cat"; whether a hyponym is supported is the unsupported-object check's question)."""
    tree = hierarchy()
    return any(c in tree.ancestors(s) or s in tree.ancestors(c) for s in subject for c in claimed)


def supports(claimed: frozenset[str], stated: set[str]) -> bool:
    """True when one synset of ``claimed`` is one of ``stated`` or more general than one (a hypernym)."""
    tree = hierarchy()
    return any(c in tree.ancestors(s) for s in stated for c in claimed)


def stated_synsets(texts: list[str]) -> set[str]:
    """Every synset the English ``texts`` name."""
    out: set[str] = set()
    for text in texts:
        for synsets in english_names(text).values():
            out |= synsets
    return out


def lexicon_names(lang: str) -> list[str]:
    """Names the lexicon gives in ``lang``: nouns and people phrases (folded)."""
    lexicon = load_lexicon()
    names = [entry[0] for langs in lexicon.nouns.values() for code, entry in langs.items() if code == lang]
    for forms in lexicon.people.values():
        if lang in forms:
            names += [forms[lang].nom, forms[lang].with_]
    return [" ".join(words(n)) for n in names]


def lexicon_words(lang: str) -> frozenset[str]:
    """Every word the lexicon writes in ``lang``: names, articles, connectors, attribute labels."""
    lexicon = load_lexicon()
    out = [w for n in lexicon_names(lang) for w in n.split()]
    out += [a for case in lexicon.articles.get(lang, {}).values() for a in case.values()]
    out += [by_lang[lang] for by_lang in lexicon.connectors.values() if lang in by_lang]
    out += [w for labels in lexicon.attributes.values() if lang in labels for w in words(labels[lang])]
    return frozenset(fold(w) for w in out)


def subject_names(draft: str, lang: str) -> tuple[str, list[str]] | None:
    """The draft's subject: (its own words, folded; its names in ``lang`` from the lexicon), or None when the draft
    names none or is free text (a source caption, a VLM's sentence) rather than one name.

    English names are matched through WordNet by ``english_names`` instead, so the lexicon part is [] for "en"."""
    subject = read_subject(draft)
    if subject is None or not (subject.thing or subject.people) or len(subject.thing.split()) > 3:
        return None  # no subject, or free text (a source caption, a VLM's sentence) rather than one name
    if subject.thing and not subject.people and set(words(subject.thing)) <= vague_words("en") | function_words("en"):
        return None  # "a mostly red scene": colours, not a subject
    own = " ".join(words(subject.thing if not subject.people else subject.english()))
    if lang == "en":
        return own, []
    lexicon = load_lexicon()
    out = []
    if subject.thing:
        # The name, else its head noun ("red leather handbag" -> "leather handbag" -> "handbag"); its synonyms and
        # the names of the lexicon's broader entries ("Lampe" keeps "Tischlampe", as "a lamp" keeps "a table lamp").
        thing = subject.thing.lower().split()
        key = next((k for n in range(len(thing)) if lang in lexicon.nouns.get(k := " ".join(thing[n:]), {})), None)
        if key is not None:
            out += [n for k in (key, *broader(key)) if lang in lexicon.nouns[k] for n in lexicon_synonyms(k, lang)]
    if subject.people:
        forms = lexicon.people.get(subject.people, {}).get(lang)
        if forms is not None:
            out += [" ".join(words(forms.nom)), " ".join(words(forms.with_))]
    return own, list(dict.fromkeys(out))


def lexicon_synonyms(name: str, lang: str) -> list[str]:
    """The lexicon's name of ``name`` in ``lang`` (when it has one) and its synonyms (``synonyms`` in
    policies/vocabulary.yaml), folded."""
    entry = load_lexicon().nouns.get(name, {}).get(lang)
    found = ([entry[0]] if entry else []) + list(data().get("synonyms", {}).get(name, {}).get(lang, []))
    return [" ".join(words(n)) for n in found]


@lru_cache(maxsize=1)
def _noun_synsets() -> dict[str, frozenset[str]]:
    """The lexicon's English names -> the WordNet synsets each names (names WordNet lacks are left out)."""
    out = {}
    for name in load_lexicon().nouns:
        found = english_names(name).get(" ".join(words(name)))
        if found:
            out[name] = found
    return out


@lru_cache(maxsize=512)
def broader(name: str) -> tuple[str, ...]:
    """The lexicon's entries WordNet puts above ``name`` or beside it as the same synset ("lamp" for "table lamp"),
    specific ones only (never "artifact" or "object")."""
    table = _noun_synsets()
    own = table.get(name, frozenset())
    above = {a for s in own for a in hierarchy().ancestors(s) if is_specific(a)}
    return tuple(k for k, synsets in table.items() if k != name and synsets & above)


def product_titles(ctx: Any, sku: str) -> list[str]:
    """The titles the catalog gives ``sku`` (its own, and in the context's locale), folded; [] when none."""
    titles = []
    for fact in ctx.facts:
        if fact.sku != sku:
            continue
        fields = dict(fact.fields)
        if fields.get("title"):
            titles.append(fields["title"])
        local = localized_fields(fields, ctx.locale)
        if local and local.get("title"):
            titles.append(local["title"])
    return list(dict.fromkeys(" ".join(words(t)) for t in titles if words(t)))


def catalog_words(ctx: Any) -> frozenset[str]:
    """Every word of the facts' texts and fields (catalog words a caption may repeat)."""
    out: set[str] = set()
    for fact in ctx.facts:
        out |= set(words(fact.text))
        for value in fact.fields.values():
            out |= set(words(str(value)))
    return frozenset(out)


def locale_catalog_words(ctx: Any) -> frozenset[str]:
    """The words of the facts' fields written for the context's locale (its own i18n fields, or the catalog row's
    fields when the row is in that language) and of the brand: the catalog words a caption in that language may
    use."""
    lang = language_code(ctx.locale)
    out: set[str] = set()
    for fact in ctx.facts:
        fields = dict(fact.fields)
        local = {**{k: v for k, v in fields.items() if k == "brand"}, **(localized_fields(fields, ctx.locale) or {})}
        if fields.get("locale") and language_code(str(fields["locale"])) == lang:
            local = {**{k: v for k, v in fields.items() if not k.startswith("i18n.")}, **local}
        for value in local.values():
            out |= set(words(str(value)))
    return frozenset(out)


def contains(text_words: list[str], phrase: str) -> bool:
    """True when the folded ``phrase`` occurs in ``text_words`` as whole words."""
    target = phrase.split()
    if any("\u3040" <= ch <= "\u9fff" for ch in phrase):  # kana/Han: written without spaces, words can't be split
        return bool(target) and "".join(target) in "".join(text_words)
    n = len(target)
    return n > 0 and any(text_words[i : i + n] == target for i in range(len(text_words) - n + 1))


# Languages that write compounds as one word: "Espressotasse" is a Tasse, "emaljmugg" a mugg (the head is last).
_COMPOUNDING = frozenset({"de", "nl", "sv", "da", "nb", "nn", "no"})
_MIN_MODIFIER = 3  # letters before a compound's head: "Espresso|tasse", never "S|tasse"


def names(text_words: list[str], phrase: str, lang: str) -> bool:
    """True when the text names the folded ``phrase`` in ``lang``, in the singular or a plural form
    (``plural_forms``): as whole words; in a language without spaces, anywhere in the text; in a compounding
    language, also as the head (last part) of a compound word."""
    for form in plural_forms(phrase, lang):
        if contains(text_words, form):  # kana/Han phrases are found anywhere in the text (``contains``)
            return True
        compound = lang in _COMPOUNDING and form and " " not in form
        if compound and any(len(w) >= len(form) + _MIN_MODIFIER and w.endswith(form) for w in text_words):
            return True
    return False


def plural_forms(phrase: str, lang: str) -> list[str]:
    """The folded ``phrase`` and its plurals by the endings of ``plural_endings`` in policies/vocabulary.yaml
    ("handschuh" -> "handschuhe"; "lampe de table" -> "lampes de table": the head is the first word in the
    ``head_first`` languages, else the last)."""
    parts = phrase.split()
    endings = data().get("plural_endings", {}).get(lang, [])
    if not parts or not endings:
        return [phrase]
    at = 0 if lang in data().get("head_first", []) else len(parts) - 1
    head, out = parts[at], [phrase]
    for rule in endings:
        old, new = (fold(p) for p in rule.split(">", 1))
        if head.endswith(old) and len(head) > len(old) + 1:
            out.append(" ".join([*parts[:at], head[: len(head) - len(old)] + new, *parts[at + 1 :]]))
    return list(dict.fromkeys(out))


@lru_cache(maxsize=32)
def unit_words(lang: str) -> frozenset[str]:
    """The words of the unit names the locale formatter writes in ``lang`` (CLDR short forms through babel:
    "升" in zh, "Std." in de), so a formatted quantity is not taken for a foreign word."""
    from babel.core import UnknownLocaleError
    from babel.units import UnknownUnitError, format_unit

    from caption_agent.formats import UNITS

    out: set[str] = set()
    for unit in filter(None, UNITS.values()):
        for value in (1, 2, 1.5, 5):
            try:
                out |= set(words(str(format_unit(value, unit, length="short", locale=lang))))
            except (UnknownLocaleError, UnknownUnitError, ValueError):
                break
    return frozenset(out)


@lru_cache(maxsize=64)
def template_words(preset: str, lang: str) -> frozenset[str]:
    """The fixed words of the bundled compose template of ``preset`` in ``lang`` (slots left out)."""
    from caption_agent.refiners.template import load_template

    template = load_template(preset)
    if template is None or lang not in template.languages:
        return frozenset()
    spec = template.languages[lang]
    texts = [t for piece in spec.pieces for t in piece.text] + [spec.pair, spec.separator]
    return frozenset(w for t in texts for w in words(re.sub(r"\{[^{}]*\}", " ", t)))


def lang_of(ctx: Any) -> str:
    return language_code(ctx.locale)
