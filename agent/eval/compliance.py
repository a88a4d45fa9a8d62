"""Length and language compliance of captions, per style preset.

Length: a caption complies when its characters lie within the preset's ``min_chars``..``max_chars`` and, where
the preset sets them, its words within ``max_words`` and its CLIP tokens within ``max_clip_tokens``.
Language: the policy's language rule (langdetect, seeded) is run on the caption with the requested locale;
captions it is too short to check are counted as "not checked", never as compliant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from caption_agent.eval.data import EvalItem


@dataclass
class PresetCompliance:
    preset: str
    captions: int = 0
    length_ok: int = 0
    lengths: list[int] = field(default_factory=list)
    language: dict[str, int] = field(default_factory=lambda: {"ok": 0, "wrong": 0, "uncertain": 0, "not_checked": 0})
    limits: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        checked = self.language["ok"] + self.language["wrong"] + self.language["uncertain"]
        lengths = sorted(self.lengths)
        return {
            "captions": self.captions,
            "limits": self.limits,
            "length_compliance": _rate(self.length_ok, self.captions),
            "chars": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1], "all": self.lengths}
            if lengths
            else {},
            "language_compliance": _rate(self.language["ok"], checked),
            "language": dict(self.language),
        }


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def length_ok(text: str, preset: Any) -> bool:
    """Whether ``text`` fits the preset's length limits (characters, words, CLIP tokens)."""
    if not preset.min_chars <= len(text) <= preset.max_chars:
        return False
    if preset.max_words and len(text.split()) > preset.max_words:
        return False
    if preset.max_clip_tokens:
        from caption_agent.clip_tokens import count_clip_tokens

        if count_clip_tokens(text) > preset.max_clip_tokens:
            return False
    return True


def language_status(text: str, locale: str, preset: Any, engine: Any, facts: list[Any]) -> str:
    """'ok', 'wrong', 'uncertain' or 'not_checked', by the policy's language rule."""
    from caption_agent.policies import ModerationContext

    rule = next(r for r in engine.rules(preset.name) if r.name == "language")
    result = rule.check_output(text, ModerationContext(preset=preset, locale=locale, draft="", facts=facts))
    details = result.decisions[0].details
    probs: dict[str, float] = details.get("detected") or {}
    if "detected" not in details:
        return "not_checked"
    if probs.get(details["expected"], 0.0) >= rule.config.accept_probability:
        return "ok"
    if max(probs.values(), default=0.0) >= rule.config.mismatch_probability:
        return "wrong"
    return "uncertain"


def compliance(items: list[EvalItem], engine: Any, prompts_dir: Any = None) -> dict[str, dict[str, Any]]:
    """Per preset (items with a caption and a style): length and language compliance."""
    from caption_agent.prompts import load_preset
    from caption_agent.schemas import GroundingFact

    out: dict[str, PresetCompliance] = {}
    for item in items:
        if not item.text or not item.style:
            continue
        preset = load_preset(item.style, prompts_dir)
        row = out.setdefault(
            item.style,
            PresetCompliance(
                item.style,
                limits={
                    "min_chars": preset.min_chars,
                    "max_chars": preset.max_chars,
                    "max_words": preset.max_words,
                    "max_clip_tokens": preset.max_clip_tokens,
                },
            ),
        )
        row.captions += 1
        row.lengths.append(len(item.text))
        row.length_ok += length_ok(item.text, preset)
        facts = [GroundingFact.model_validate(f) for f in item.record.get("facts", [])]
        row.language[language_status(item.text, item.locale, preset, engine, facts)] += 1
    return {name: row.to_dict() for name, row in sorted(out.items())}
