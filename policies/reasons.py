"""Hold reasons as data: ``CaptionResult.reasons`` from the decisions that held a result (``policies/reasons.yaml``).

A decision may name its reason code in ``details.code`` (``subject.unnamed``); otherwise its rule's entry applies
and the code is ``<rule>.<action>``. Each cause is listed once; its ``detail`` is the rule's own wording.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from caption_agent.schemas import HoldReason, PolicyDecision

__all__ = ["hold_reasons", "reason_for"]

_HOLDING = ("review", "block")


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    path = Path(str(resources.files("caption_agent.policies") / "reasons.yaml"))
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def rule_words() -> dict[str, dict[str, str]]:
    """Rule -> {message, fix} (the table's ``rules``): what the review desk says for records without ``reasons``."""
    rules = _table().get("rules", {})
    return {str(k): {"message": str(v.get("message", "")), "fix": str(v.get("fix", ""))} for k, v in rules.items()}


def reason_for(decision: PolicyDecision) -> HoldReason:
    """The reviewer-facing reason for one decision."""
    table = _table()
    rule = decision.rule.split(":")[0]
    code = str(decision.details.get("code") or f"{rule}.{decision.action}")
    entry = table.get("codes", {}).get(code) or table.get("rules", {}).get(rule) or table.get("default", {})
    return HoldReason(
        code=code,
        message=str(entry.get("message", "")),
        fix=str(entry.get("fix", "")),
        detail=decision.reason,
        rule=decision.rule,
    )


def hold_reasons(decisions: Iterable[PolicyDecision], action: str | None) -> list[HoldReason]:
    """Why a result whose final action is ``action`` is held: one reason per cause (none when it is published).

    The decisions that chose the outcome count: those whose action is the final one (review or block)."""
    if action not in _HOLDING:
        return []
    out: dict[tuple[str, str], HoldReason] = {}
    for decision in decisions:
        if decision.action != action:
            continue
        reason = reason_for(decision)
        out.setdefault((reason.code, reason.rule), reason)
    if not out:  # a hold always says why, even when no single decision did
        out[("", "")] = HoldReason(
            code=f"held.{action}",
            message=str(_table().get("default", {}).get("message", "")),
            fix=str(_table().get("default", {}).get("fix", "")),
            detail="no rule gave a reason",
            rule="",
        )
    return list(out.values())
