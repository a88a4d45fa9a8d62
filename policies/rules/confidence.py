"""Confidence: results the ranker was unsure about go to human review."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult


class ConfidenceConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "regenerate", "fallback", "review", "block"] = "review"
    on_exhausted: Literal["fallback", "review", "block"] = "review"
    on_draft: Literal["allow", "review", "block"] = "review"
    threshold: float = Field(0.0, ge=0, le=1, description="Confidence below this takes the action.")


class ConfidenceRule(Rule):
    name = "confidence"
    config_model = ConfidenceConfig
    stages = frozenset({"output"})
    config: ConfidenceConfig

    def check_output(self, text: str, ctx) -> RuleResult:
        if ctx.confidence is None:
            return self.allow(text, "no confidence score given; not checked")
        if ctx.confidence >= self.config.threshold:
            return self.allow(text, f"confidence {ctx.confidence:.2f} >= {self.config.threshold:.2f}")
        return self.violation(
            text,
            None,
            f"confidence {ctx.confidence:.2f} < {self.config.threshold:.2f}",
            ctx,
            confidence=ctx.confidence,
            threshold=self.config.threshold,
        )
