"""BCP-47 locale validation with babel."""

from __future__ import annotations

from functools import lru_cache

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
