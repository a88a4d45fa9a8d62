"""BCP-47 locale validation with babel, and which catalog locale serves a requested one (fallbacks as data)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from caption_agent.errors import InvalidLocaleError


@lru_cache(maxsize=512)
def normalize_locale(tag: str) -> str:
    """Return a canonical BCP-47 tag (``de-DE``) or raise InvalidLocaleError."""
    from babel import Locale, UnknownLocaleError

    raw = (tag or "").strip()
    if not raw or len(raw) > 35:
        raise InvalidLocaleError(f"locale {tag!r} is empty or too long.")
    try:
        loc = Locale.parse(raw.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise InvalidLocaleError(f"locale {tag!r} is not a known BCP-47 locale.") from exc
    parts = [loc.language]
    if loc.script:
        parts.append(loc.script)
    if loc.territory:
        parts.append(loc.territory)
    return "-".join(parts)


@lru_cache(maxsize=512)
def language_name(tag: str) -> str:
    """English name of the locale's language and region, for prompts ("German (Germany)")."""
    from babel import Locale

    loc = Locale.parse(normalize_locale(tag).replace("-", "_"))
    return loc.get_display_name("en") or tag


def language_code(tag: str) -> str:
    return normalize_locale(tag).split("-")[0]


@lru_cache(maxsize=512)
def writing_system(tag: str) -> tuple[str, str]:
    """(language, script) of a locale, the script from CLDR's likely subtags when the tag names none:
    zh-TW -> ("zh", "Hant"), zh-CN -> ("zh", "Hans"), en-GB -> ("en", "Latn")."""
    from babel import Locale
    from babel.core import get_global

    loc = Locale.parse(normalize_locale(tag).replace("-", "_"))
    if loc.script:
        return loc.language, loc.script
    likely = get_global("likely_subtags")
    full = likely.get(f"{loc.language}_{loc.territory}") if loc.territory else None
    full = full or likely.get(loc.language) or ""
    parts = full.split("_")
    return loc.language, parts[1] if len(parts) > 2 else ""


class LocaleFallbacks(BaseModel):
    """``prompts/compose/locales.yaml``: which catalog locale's text may serve a requested locale."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field("1", description="Bump when the table changes; recorded with the template data's hash.")
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Requested locale -> catalog locales that serve it, in order (de-AT: [de-DE]).",
    )
    strict: list[str] = Field(
        default_factory=list,
        description="Languages whose regional variants are not interchangeable (pt: pt-BR text never serves pt-PT "
        "unless `fallbacks` lists it).",
    )

    written_for: dict[str, str] = Field(
        default_factory=dict,
        description="Language -> the one locale its template and lexicon entries are written for (pt: pt-BR): "
        "other locales of a strict language use them only when `fallbacks` lists that locale.",
    )

    def language_data_serves(self, locale: str) -> str | None:
        """None when the language's template and lexicon entries serve ``locale``, else the locale they are
        written for."""
        lang = language_code(locale)
        target = self.written_for.get(lang)
        if target is None or lang not in self.strict or locale == target or target in self.fallbacks.get(locale, []):
            return None
        return target

    def chain(self, available: Iterable[str], locale: str) -> str | None:
        """The available tag that serves ``locale``: the same tag, then the listed fallbacks, then (for languages
        not marked strict) one in the same language and script, a bare language tag first. None when none does."""
        tags = sorted(set(available))
        if locale in tags:
            return locale
        for tag in self.fallbacks.get(locale, []):
            if tag in tags:
                return tag
        if language_code(locale) in self.strict:
            return None
        same = [t for t in tags if _same_script(t, locale)]
        return min(same, key=lambda t: (t.count("-"), t)) if same else None


def _same_script(tag: str, locale: str) -> bool:
    try:
        return writing_system(tag) == writing_system(locale)
    except InvalidLocaleError:
        return False


@lru_cache(maxsize=8)
def load_fallbacks(path: Path) -> LocaleFallbacks:
    """The fallback table in ``path`` (validated; ConfigError says what is wrong)."""
    import yaml
    from pydantic import ValidationError

    from caption_agent.errors import ConfigError

    try:
        table = LocaleFallbacks.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(
            f"locale fallbacks {str(path)!r} are invalid: {exc}", fix="compare them with prompts/compose/locales.yaml."
        ) from exc
    try:  # tags as people write them (zh-SG) in canonical form (zh-Hans-SG)
        fallbacks = {normalize_locale(k): [normalize_locale(t) for t in v] for k, v in table.fallbacks.items()}
        written = {k: normalize_locale(v) for k, v in table.written_for.items()}
    except InvalidLocaleError as exc:
        raise ConfigError(f"locale fallbacks {str(path)!r}: {exc.reason}", fix="use BCP-47 tags (de-AT).") from exc
    table = table.model_copy(update={"fallbacks": fallbacks, "written_for": written})
    return table
