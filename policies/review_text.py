"""What the review desk says about an item: the reasons in a reviewer's words, the text an edit starts from, and
how far an edit moved from the caption it replaced."""

from __future__ import annotations

import re
from typing import Any

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text or "")


def edit_distance(before: str, after: str) -> tuple[int, int]:
    """(word-level Levenshtein distance, words in ``before``): 0 for an unchanged caption."""
    a, b = words(before), words(after)
    prev = list(range(len(b) + 1))
    for i, wa in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, wb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (wa != wb))
        prev = cur
    return prev[-1], len(a)


def reason_words() -> dict[str, dict[str, str]]:
    """Rule -> {message, fix}: the `rules` of the hold-reason table ``policies/reasons.yaml`` (policies.reasons)."""
    from caption_agent.policies.reasons import rule_words

    return rule_words()


def reviewer_reasons(item: dict[str, Any]) -> list[dict[str, str]]:
    """The item's reasons as {code, message, fix, detail, rule}, each once: the result's own ``reasons`` when it
    carries them; else derived from its decisions through ``reasons.yaml``, the rule's wording as detail."""
    result = item.get("result") or {}
    own = result.get("reasons") or []
    if own:
        out = [{k: str(r.get(k) or "") for k in ("code", "message", "fix", "detail", "rule")} for r in own]
    else:
        known = reason_words()
        by_rule: dict[str, dict[str, str]] = {}
        for d in result.get("decisions") or []:
            rule = str(d.get("rule") or "")
            if d.get("action") == "allow" or not rule:
                continue
            detail = f"{rule} ({d.get('action')}): {d.get('reason') or ''}".strip()
            if rule in by_rule:  # one reason per rule; the details of each decision stay together
                if detail not in by_rule[rule]["detail"]:
                    by_rule[rule]["detail"] += "\n" + detail
                continue
            words_ = known.get(rule) or {"message": f"The {rule.replace('_', ' ')} check held this caption.", "fix": ""}
            by_rule[rule] = {"code": rule, "rule": rule, "detail": detail, **words_}
        out = list(by_rule.values())
        if not out and result.get("confidence") is not None:
            out.append({"code": "confidence", "rule": "confidence", **known["confidence"],
                        "detail": f"confidence {result['confidence']:.2f}"})  # fmt: skip
    if item.get("audit"):
        out.insert(0, {"code": "audit", "rule": "audit", "detail": "sampled from results published as ok",
                       **reason_words()["audit"]})  # fmt: skip
    return out


def best_edit_text(item: dict[str, Any]) -> tuple[str, str]:
    """(text the edit box starts from, hint). The best text already in the item's language: the caption, else
    the draft; empty with a hint when neither is in that language (an English draft for a de-DE item)."""
    from caption_agent.locales import language_code, language_name

    result = item.get("result") or {}
    locale = str(result.get("locale") or "en")
    lang = language_code(locale)
    name = language_name(locale)
    for text in (item.get("text"), item.get("draft")):
        if text and in_language(text, lang):
            return text, ""
    return "", f"No caption in {name} yet: write one in {name} (the draft is in another language)."


def in_language(text: str, lang: str) -> bool:
    """True when ``text`` reads as language ``lang`` (langdetect, seeded); short English-only text is English."""
    from caption_agent.policies.rules.language import detect

    found = detect(text)
    if not found:
        return lang == "en"
    top, prob = found[0]
    if top == lang:
        return True
    if len(words(text)) < 5:  # too short to detect: trust it only for English, the drafters' language
        return lang == "en"
    return any(code == lang and p >= 0.2 for code, p in found) and prob < 0.8


def warm_up() -> None:
    """Load the language detector's profiles now (about a second), not at the first item a reviewer opens."""
    in_language("A white cup on a wooden table, seen from above.", "en")
