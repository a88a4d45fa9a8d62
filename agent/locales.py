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
