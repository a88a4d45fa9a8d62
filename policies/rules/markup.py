"""Markup: HTML/script tags, HTML comments and entities, and markdown links are not part of a caption.

A caption is plain text wherever it is published (alt attributes, feeds, product pages). Markup in model output
is stripped and the fix recorded; in a reviewer's edit it is refused (``on_edit``), so `review import` and the
/review page never publish it. What is not markup stays: the policy's own masks ("[email]"), "&" in brand names
("Barnes & Noble"), "<" and ">" in sizes ("<5 mm", "size > 40"), brackets that link nowhere ("[S](small)").
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.entities import html5
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from caption_agent.canonical import canonical
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.text import tidy

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.policies.context import ModerationContext

# HTML elements (and SVG/MathML roots) a browser renders; any other <name> is text ("S<M>L") unless it has
# attributes (an unknown element with an onclick still runs it), a hyphen (a custom element) or is a closing tag.
HTML_TAGS = frozenset(
    "a abbr address area article aside audio b base bdi bdo blink blockquote body br button canvas caption center "
    "cite code col colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset figcaption figure "
    "font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img input ins kbd label "
    "legend li link main map mark marquee math menu meta meter nav noscript object ol optgroup option output p "
    "param picture pre progress q rp rt ruby s samp script search section select slot small source span strike "
    "strong style sub summary sup svg table tbody td template textarea tfoot th thead time title tr track tt u ul "
    "var video wbr".split()
)
# Elements whose content is code or data, never caption text: removed with what they hold.
_CONTENT_TAGS = "script|style|iframe|object|embed|noscript|template|svg|math|textarea|title|head"
# Inline elements vanish without a trace ("<b>red</b>" -> "red"); others leave a space ("a<br>b" -> "a b").
_INLINE_TAGS = frozenset(
    "a abbr b bdi bdo cite code del dfn em font i ins kbd mark q s samp small span strike strong sub sup tt u "
    "var".split()
)
_ATTRS = r"""(?:\s+(?:"[^"]*"|'[^']*'|[^'"<>])*)?"""

# A tag left open at the end still runs in a browser: a code element, or another one with an attribute.
_OPEN_AT_END = (
    rf"<(?:({_CONTENT_TAGS})\b[^<>]*|(a|img|link|meta|base|form|input|body|html|video|audio)\b[^<>]*=[^<>]*)$"
)
# One character of a link target, or a balanced pair of parentheses ("javascript:alert(1)", "Mug_(vessel)").
_TARGET = r"(?:[^()\s<>]|\([^()\s<>]{0,200}\))"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("html comment", re.compile(r"<!--.*?(?:-->|$)|<!\[CDATA\[.*?(?:\]\]>|$)|<![A-Za-z][^<>]*>|<\?.*?(?:\?>|$)", re.S)),
    ("script", re.compile(rf"<({_CONTENT_TAGS})\b{_ATTRS}\s*/?>.*?(?:</\1\s*>|$)", re.S | re.I)),
    ("autolink", re.compile(r"<(?:https?|ftp|mailto|javascript|data):[^<>\s]*>", re.I)),
    ("html tag", re.compile(rf"</?([A-Za-z][\w:-]*){_ATTRS}\s*/?>")),
    ("open tag", re.compile(_OPEN_AT_END, re.I)),
    ("markdown image", re.compile(rf"!\[([^\[\]\n]{{0,300}})\]\(\s*<?{_TARGET}*>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")),
    # A link goes somewhere: its target has a scheme, a path, a domain, an anchor or a (masked) address.
    ("markdown link",
     re.compile(rf"\[([^\[\]\n]{{0,300}})\]\(\s*<?({_TARGET}*[:/.#?@\[]{_TARGET}*)>?(?:\s+\"[^\"]*\")?\s*\)")),
    ("markdown link", re.compile(r"^[ \t]{0,3}\[[^\]\n]{1,100}\]:[ \t]*\S+.*$", re.M)),  # reference definition
    ("html entity", re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")),
)  # fmt: skip


def _is_tag(match: re.Match[str]) -> bool:
    name = match.group(1).lower()
    return name in HTML_TAGS or "-" in name or "=" in match.group() or match.group().startswith("</")


def strip_markup(text: str) -> tuple[str, list[str]]:
    """``text`` without markup, and what was removed ("html tag <script>", "markdown link", ...), in order.

    Markup is found in the canonical form (agent.canonical), so look-alikes that normalise to markup
    ("＜script＞", "﹤b﹥", invisible characters inside a tag name) count; it is cut out of the text as written,
    and what is not markup is left exactly as it was. Repeats until nothing changes (at most 4 rounds), so that
    entities that decode to a tag ("&lt;b&gt;") and tags split by tags ("<scr<b></b>ipt>") are removed too."""
    removed: list[str] = []
    for _ in range(4):
        before = text
        for kind, pattern in _PATTERNS:
            text = canonical(text).sub(pattern, lambda m, raw, k=kind: _replace(k, m, raw, removed))  # type: ignore[misc]
        if text == before:
            break
    return text, list(dict.fromkeys(removed))


def _replace(kind: str, match: re.Match[str], raw: Callable[[int], str], removed: list[str]) -> str:
    whole = match.group()
    if kind == "html tag":
        if not _is_tag(match):
            return raw(0)
        name = match.group(1).lower()
        removed.append(f"html tag <{name}>")
        return "" if name in _INLINE_TAGS else " "
    if kind == "html entity":
        # Only whole entities: html.unescape would also read "&notit;" as "¬it;".
        decoded = html.unescape(whole) if whole.startswith("&#") else html5.get(whole[1:], whole)
        if decoded == whole:
            return raw(0)
        removed.append(f"html entity {whole}")
        return decoded
    if kind == "open tag":
        removed.append(f"html tag <{(match.group(1) or match.group(2)).lower()}>")
        return " "
    if kind == "script":
        removed.append(f"html tag <{match.group(1).lower()}> and its content")
        return " "
    removed.append(kind)
    return raw(1) if kind in ("markdown link", "markdown image") and match.re.groups else " "


def find_markup(text: str) -> list[str]:
    """What ``strip_markup`` would remove from ``text``; empty for plain text."""
    return strip_markup(text)[1]


class MarkupConfig(RuleConfig):
    action: Literal["allow", "redact", "regenerate", "fallback", "review", "block"] = "redact"
    on_exhausted: Literal["redact", "fallback", "review", "block"] = "redact"
    on_draft: Literal["allow", "redact", "review", "block"] = "redact"
    on_edit: Literal["review", "block"] = Field(
        "review", description="A reviewer's edit with markup is refused, never stripped: held for review, or blocked."
    )


class MarkupRule(Rule):
    name = "markup"
    config_model = MarkupConfig
    order = 30  # before pii: a tag cannot split an address ("jane@<b></b>shop.com") past the PII check
    stages = frozenset({"output"})
    config: MarkupConfig

    def check_output(self, text: str, ctx: ModerationContext) -> RuleResult:
        cleaned, removed = strip_markup(text)
        if not removed:
            return self.allow(text, "plain text, no markup")
        what = ", ".join(removed[:8])
        if ctx.human_edit:
            # What a person typed is published as typed or not at all: refuse, do not rewrite.
            reason = f"the edit contains markup ({what}); captions are plain text"
            return self.violation(text, None, reason, None, wanted=self.config.on_edit, removed=removed)
        fixed = tidy(cleaned)
        wanted = self.config.action
        if not fixed and wanted in ("redact", "regenerate"):
            wanted = "fallback"  # nothing but markup: the ranked draft says more than an empty caption
        result = self.violation(
            text,
            fixed,
            f"stripped markup ({what})" + ("; nothing else was left" if not fixed else ""),
            ctx,
            feedback="write plain text: no HTML tags, HTML entities or markdown links",
            wanted=wanted,
            private=True,
            removed=removed,
        )
        # The rule runs before pii (so markup cannot split an address); the text after it may still hold the
        # PII that rule masks next, so the decision keeps neither side of the fix.
        result.decisions = [d.model_copy(update={"after": None}) for d in result.decisions]
        return result
