"""The deterministic, grounded refiner: per-preset, per-language templates filled with the draft's subject and
the catalog's own facts, chosen by priority to fit the length budget.

It states nothing that is not in the draft, the facts or its templates' fixed wording, so the grounding rule passes
by construction. Words in other languages come from the catalog's localized fields (``i18n``) and the hand-written
lexicon, never from machine translation: when a locale lacks them the caption cannot be written, and the refine
loop sends it to review with the reason (``CannotComposeError``) instead of publishing English labelled de-DE.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from caption_agent.config import TemplateRefinerSettings
from caption_agent.errors import ConfigError
from caption_agent.glossary import Glossary
from caption_agent.locales import LocaleFallbacks, language_code, load_fallbacks
from caption_agent.refiners.base import RefineJob, Refiner, parse_refined
from caption_agent.refiners.chain import CannotComposeError
from caption_agent.refiners.subject import Lexicon, load_lexicon, subject_from
from caption_agent.retrieval.i18n import localized
from caption_agent.schemas import GroundingFact, RefinedCaption

__all__ = ["TemplateRefiner", "ComposeTemplate", "CannotComposeError", "load_template"]

_SLOT = re.compile(r"\{([a-z_]+(?:\.[^{}]+)?)\}")
_LISTS = ("attributes", "description")  # slots filled with as many items as fit
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？])(?=\S)")  # CJK sentences end without a space
_PLACEHOLDER = re.compile(r"\[[^\]]*\]")  # text the policy masked or cut ([email], [instruction removed])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Piece(_Strict):
    text: list[str] = Field(min_length=1, description="Alternatives; the first whose slots can all be filled wins.")
    required: bool = Field(False, description="Without it the caption cannot be written (review).")
    priority: int = Field(1, ge=0, le=9, description="Fill order of optional pieces (lower first).")

    @field_validator("text", mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("text")
    @classmethod
    def _one_list_slot(cls, value: list[str]) -> list[str]:
        for text in value:
            if sum(1 for s in _SLOT.findall(text) if s in _LISTS) > 1:
                raise ValueError(f"{text!r} has more than one list slot ({', '.join(_LISTS)})")
        return value


class LanguageTemplate(_Strict):
    pieces: list[Piece] = Field(min_length=1)
    pair: str = Field("{name}: {value}", description="How one attribute is written in {attributes}.")
    separator: str = Field(", ", description="Between attributes.")
    joiner: str = Field(" ", description="Between pieces (sentences): '' for Chinese and Japanese.")


class ComposeTemplate(_Strict):
    """``prompts/compose/PRESET.yaml``: how the template refiner writes one preset, per language."""

    preset: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    version: str = "1"
    attribute_order: list[str] = Field(default_factory=list, description="Attributes first to be stated.")
    languages: dict[str, LanguageTemplate] = Field(min_length=1, description="Primary language subtag -> template.")


@lru_cache(maxsize=64)
def _read_template(path: Path) -> ComposeTemplate:
    try:
        template = ComposeTemplate.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(
            f"compose template {str(path)!r} is invalid: {exc}", fix="compare it with prompts/compose/seo_product.yaml."
        ) from exc
    if template.preset != path.stem:
        raise ConfigError(f"compose template {str(path)!r} is for preset {template.preset!r}; rename one of them.")
    return template


def load_template(preset: str, user_dir: Path | None = None) -> ComposeTemplate | None:
    """The compose template of ``preset`` (a user folder's first), or None when there is none."""
    folders = [Path(str(resources.files("caption_agent.prompts") / "compose"))]
    if user_dir is not None:
        folders.insert(0, Path(user_dir))
    for folder in folders:
        path = folder / f"{preset}.yaml"
        if path.is_file():
            return _read_template(path)
    return None


@dataclass
class _Slots:
    """What the template may say: values with the fact id each rests on, and why a missing one is missing."""

    values: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # list slots: (text, fact id, the value it states: an item whose value the caption already says is skipped)
    items: dict[str, list[tuple[str, str | None, str]]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    separator: str = ", "  # between attributes
    joiner: str = " "  # between sentences
    notes: list[str] = field(default_factory=list)  # provenance: which catalog locale's text served

    def why(self, slots: Sequence[str]) -> str:
        return "; ".join(dict.fromkeys(self.missing.get(s.split(".")[0], f"nothing fills {{{s}}}") for s in slots))


def _product_slots(
    slots: _Slots,
    facts: list[GroundingFact],
    locale: str,
    lang: str,
    template: ComposeTemplate,
    lexicon: Lexicon,
    table: LocaleFallbacks,
) -> None:
    """Slots from the best-matching product's facts (the first fact's sku), in the locale's own catalog text."""
    if not facts:
        for name in ("title", "brand", "description", "attributes", "attr"):
            slots.missing[name] = "no catalog facts for this image"
        return
    product = _product_text(slots, facts, locale, table)
    for name in ("title", "brand"):
        if (value := product.usable(name)) is not None:
            slots.values[name] = (value, product.fact_id(name))
        else:
            slots.missing.setdefault(name, f"{product.sku} has no usable {name} in {locale}")
    _description_slot(slots, product)
    _attribute_slots(slots, product, lang, template, lexicon)
    slots.missing.setdefault("attr", f"{product.sku} lacks that attribute in {locale}")


@dataclass
class _ProductText:
    """One product's catalog text as written for a locale, and the ids of its facts that survived sanitizing."""

    sku: str
    locale: str
    ids: set[str]
    local: dict[str, str]

    def fact_id(self, name: str) -> str | None:
        fid = f"{self.sku}:{name}"
        return fid if fid in self.ids else None

    def usable(self, name: str) -> str | None:
        """A value whose fact survived sanitizing and that nothing masked."""
        value = self.local.get(name, "").strip()
        return value if value and self.fact_id(name) and not _PLACEHOLDER.search(value) else None


def _product_text(slots: _Slots, facts: list[GroundingFact], locale: str, table: LocaleFallbacks) -> _ProductText:
    """The first fact's product in ``locale``'s catalog text; without any, only its brand (the rest is missing)."""
    sku = facts[0].sku
    ids = {f.id for f in facts if f.sku == sku}
    fields = next((f.fields for f in facts if f.sku == sku and f.field == "title"), facts[0].fields)
    local, served = localized(fields, locale, table)
    if local is None:
        for name in ("title", "description", "attributes", "attr"):
            slots.missing[name] = (
                f"the catalog has no {locale} text for {sku} (add i18n.{locale} with its title, description and "
                f"attributes to the catalog row, or a fallback for {locale} to prompts/compose/locales.yaml)"
            )
        local = {k: v for k, v in fields.items() if k == "brand"}
    elif served != locale and language_code(served or locale) == language_code(locale):
        slots.notes.append(f"locale: {locale} written from the catalog's {served} text for {sku} (fallback)")
    return _ProductText(sku, locale, ids, local)


def _description_slot(slots: _Slots, product: _ProductText) -> None:
    """The description's whole sentences, leaving out masked ones and fragments."""
    text = product.local.get("description", "")
    sentences = [s for s in _SENTENCE.split(text) if s and not _PLACEHOLDER.search(s) and not fragment(s)]
    if sentences and (fid := product.fact_id("description")):
        slots.items["description"] = [(s.strip(), fid, s.strip()) for s in sentences]
    else:
        slots.missing.setdefault("description", f"{product.sku} has no usable description in {product.locale}")


def _attribute_slots(
    slots: _Slots, product: _ProductText, lang: str, template: ComposeTemplate, lexicon: Lexicon
) -> None:
    """Each usable attribute as its own slot ({attr.NAME}), and as a name: value pair of the attributes list."""
    attrs = [k[len("attributes.") :] for k in product.local if k.startswith("attributes.")]
    order = {name: i for i, name in enumerate(template.attribute_order)}
    pairs = []
    for name in sorted(attrs, key=lambda a: (order.get(a, len(order)), a)):
        value = product.usable(f"attributes.{name}")
        label = name if lang == "en" else lexicon.attributes.get(name, {}).get(lang)
        if value is None:
            continue
        slots.values[f"attr.{name}"] = (value, product.fact_id(f"attributes.{name}"))
        if label:  # an attribute whose name the lexicon cannot give in this language is left out of the list
            text = template.languages[lang].pair.format(name=label, value=value)
            pairs.append((text, product.fact_id(f"attributes.{name}"), value))
    if pairs:
        slots.items["attributes"] = pairs
    else:
        slots.missing.setdefault("attributes", f"{product.sku} has no attributes to state in {product.locale}")


def fragment(sentence: str) -> bool:
    """True for what is left of a sentence once a removal emptied it ("Questions?", "Contact:"): a question or a
    label of at most two words, or nothing but masks. Such text is never stated on its own."""
    text = _PLACEHOLDER.sub(" ", sentence).strip()
    words = re.findall(r"[^\W\d_]+", text)
    return not words or (len(words) <= 2 and text.endswith(("?", ":")))


def _fill(text: str, slots: _Slots, count: int) -> tuple[str, list[str]] | None:
    """``text`` with its slots filled (``count`` items of its list slot); None when a slot has no value."""
    used: list[str] = []

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _LISTS:
            chosen = slots.items[name][:count]
            used.extend(fid for _, fid, _ in chosen if fid)
            sep = slots.joiner if name == "description" else slots.separator
            return sep.join(text for text, _, _ in chosen)
        value, fid = slots.values[name]
        used.extend([fid] if fid else [])
        return value

    needed = _SLOT.findall(text)
    if any((n in _LISTS and not slots.items.get(n)) or (n not in _LISTS and n not in slots.values) for n in needed):
        return None
    out = _SLOT.sub(sub, text).strip()
    return (out[:1].upper() + out[1:], used) if out else None


def _says(text: str, value: str) -> bool:
    """Whether ``text`` already states ``value`` as a whole phrase ("size: M" is not said by every "m")."""
    return re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", text, re.IGNORECASE) is not None


def compose(
    template: ComposeTemplate, lang: str, slots: _Slots, limit: int, max_words: int | None
) -> tuple[str, list[str]]:
    """The caption: required pieces, then optional ones by priority (list slots item by item) while it fits."""
    spec = template.languages[lang]
    chosen: dict[int, tuple[str, list[str]]] = {}

    def joined(extra: dict[int, tuple[str, list[str]]]) -> str:
        parts = {**chosen, **extra}
        return spec.joiner.join(parts[i][0] for i in sorted(parts))

    def fits(text: str) -> bool:
        return len(text) <= limit and (max_words is None or len(text.split()) <= max_words)

    order = sorted(range(len(spec.pieces)), key=lambda i: (not spec.pieces[i].required, spec.pieces[i].priority, i))
    for i in order:
        piece, best, filled = spec.pieces[i], None, None
        for text in piece.text:
            lists = [s for s in _SLOT.findall(text) if s in _LISTS]
            if lists and slots.items.get(lists[0]):
                said = joined({})
                fresh = [it for it in slots.items[lists[0]] if not _says(said, it[2])]
                trial = replace(slots, items={**slots.items, lists[0]: fresh})
                for n in range(len(fresh), 0, -1):  # as many items as fit
                    filled = _fill(text, trial, n)
                    if filled and fits(joined({i: filled})):
                        best = filled
                        break
            else:
                filled = _fill(text, slots, 0)
                best = filled if filled and fits(joined({i: filled})) else None
            if best is not None:
                break
        if best is not None:
            chosen[i] = best
        elif piece.required and filled is not None:
            raise CannotComposeError(f"{filled[0]!r} does not fit the length budget ({limit} characters)")
        elif piece.required:
            raise CannotComposeError(slots.why(sorted({s for t in piece.text for s in _SLOT.findall(t)})))
    used = [fid for i in sorted(chosen) for fid in chosen[i][1]]
    return joined({}), list(dict.fromkeys(used))


class TemplateRefiner(Refiner):
    """Composes the caption from templates (``prompts/compose``), the draft's subject and the catalog's facts."""

    name = "template"
    deterministic: ClassVar[bool] = True  # the same job gives the same text: one attempt, no regeneration
    settings_model = TemplateRefinerSettings

    def __init__(self, settings: TemplateRefinerSettings | None = None) -> None:
        self.settings = settings or TemplateRefinerSettings()
        folder = self.settings.templates_dir
        if folder is not None and not Path(folder).is_dir():
            raise ConfigError(
                f"refiner.template.templates_dir {str(folder)!r} is not a folder.",
                fix="point it at a folder of PRESET.yaml compose templates, or leave it unset.",
            )
        self.lexicon = load_lexicon(self.settings.lexicon)
        self.model_id = f"template (lexicon v{self.lexicon.version}, data {self._data_digest()})"

    def _data_digest(self) -> str:
        return template_data_digest(self.settings)

    def compose(self, job: RefineJob) -> RefinedCaption:
        """The caption for ``job``; CannotComposeError says what data is missing."""
        template = load_template(job.preset.name, self.settings.templates_dir)
        lang = language_code(job.locale)
        where = f"template: no {job.preset.name} caption in {job.locale}"
        if template is None:
            raise CannotComposeError(f"{where}: there is no compose template for style {job.preset.name!r}")
        if lang not in template.languages:
            raise CannotComposeError(
                f"{where}: the {job.preset.name} compose template has no {lang!r} version (add a `{lang}:` section "
                f"to prompts/compose/{job.preset.name}.yaml, or to a copy in refiner.template.templates_dir)"
            )
        table = self._fallbacks()
        if (variant := table.language_data_serves(job.locale)) is not None:
            raise CannotComposeError(
                f"{where}: the templates' and lexicon's {lang!r} entries are written for {variant} (add {job.locale} "
                f"data, or `{job.locale}: [{variant}]` under fallbacks in prompts/compose/locales.yaml)"
            )
        spec = template.languages[lang]
        slots = _Slots(separator=spec.separator, joiner=spec.joiner)
        subject = subject_from(job.subject, job.draft)
        if lang == "en":  # the drafters write English: the draft itself may be said in English captions
            slots.values["draft"] = (job.draft.strip().rstrip("."), None)
        else:
            slots.missing["draft"] = f"the draft is in English, not {lang}"
        if subject is None and job.subject is not None:
            slots.missing["subject"] = f"the drafter named no subject ({job.draft[:80]!r})"
        elif subject is None:
            slots.missing["subject"] = f"the draft's subject could not be read from {job.draft[:80]!r}"
        else:
            named, why = subject.render(_with_glossary(self.lexicon, job, lang), lang)
            if named:
                slots.values["subject"] = (named, None)
            else:
                slots.missing["subject"] = why
        facts = list(job.facts) if job.preset.use_facts else []
        _product_slots(slots, facts, job.locale, lang, template, self.lexicon, table)
        budget = job.preset.limits(job.locale)
        try:
            text, used = compose(template, lang, slots, job.limit, budget.max_words)
        except CannotComposeError as exc:
            raise CannotComposeError(f"{where}: {exc.reason}") from None
        if len(text) < (budget.min_chars or 0):
            raise CannotComposeError(
                f"{where}: the data gives {len(text)} characters, the style needs at least {budget.min_chars}"
                + (f" ({slots.why(gaps)})" if (gaps := [n for n in ("title", "subject") if n in slots.missing]) else "")
            )
        out = parse_refined(json.dumps({"caption": text, "facts_used": used}, ensure_ascii=False), job)
        return out.model_copy(update={"notes": slots.notes[:8]}) if slots.notes else out

    def _fallbacks(self) -> LocaleFallbacks:
        """The locale fallback table: a templates_dir's locales.yaml, else the bundled one."""
        folder = self.settings.templates_dir
        user = Path(folder) / "locales.yaml" if folder is not None else None
        bundled = Path(str(resources.files("caption_agent.prompts") / "compose" / "locales.yaml"))
        return load_fallbacks(user if user is not None and user.is_file() else bundled)

    def complete(self, messages: list[dict[str, str]], job: RefineJob) -> str:
        """The composed caption as the JSON answer a model would give (messages are not needed)."""
        out = self.compose(job)
        return json.dumps({"caption": out.caption, "facts_used": out.facts_used}, ensure_ascii=False)

    def refine(self, job: RefineJob) -> RefinedCaption:
        return self.compose(job)

    async def arefine(self, job: RefineJob) -> RefinedCaption:
        return self.compose(job)


def _with_glossary(lexicon: Lexicon, job: RefineJob, lang: str) -> Lexicon:
    """The lexicon with the glossary's prescribed renderings for this job's brands (a Nordvik "mug" is a "Becher")."""
    glossary: Glossary | None = job.glossary
    if glossary is None or not glossary.terms:
        return lexicon
    brands = {str(f.fields["brand"]) for f in job.facts if f.fields.get("brand")}
    nouns = dict(lexicon.nouns)
    for entry in glossary.terms:
        rendering = glossary.rendering(entry.term, job.locale, brands)
        if rendering is not None:
            nouns[entry.term.lower()] = {**nouns.get(entry.term.lower(), {}), lang: rendering}  # type: ignore[dict-item]
    return lexicon.model_copy(update={"nouns": nouns})


def template_data_digest(settings: TemplateRefinerSettings) -> str:
    """Hash of the compose templates and the lexicon in use: provenance and job fingerprints say which data wrote
    a caption."""
    bundled = Path(str(resources.files("caption_agent.prompts") / "compose"))
    files = sorted(bundled.glob("*.yaml"))
    if settings.templates_dir is not None:
        files += sorted(Path(settings.templates_dir).glob("*.yaml"))
    if settings.lexicon is not None:
        files.append(Path(settings.lexicon))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]
