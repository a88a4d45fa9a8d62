"""Confidence: results the ranker was unsure about go to human review, and so do captions whose drafter named
its subject only just: a hedged subject (agent/drafters/hedging.py) whose mass clears the mass the hedge required
by less than ``subject_margin`` is a coin flip ("a helmet" for graffiti at 0.58 against 0.54 needed, "an animal"
for a leaf at 0.85 against 0.85), held with reason subject.unsure."""

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
    subject_margin: float = Field(
        0.0,
        ge=0,
        le=1,
        description="A drafted subject whose mass exceeds the mass its hedge required by less than this takes the "
        "action (subject.unsure); 0 turns the check off.",
    )


class ConfidenceRule(Rule):
    name = "confidence"
    config_model = ConfidenceConfig
    order = 130
    required = True
    stages = frozenset({"output"})
    config: ConfidenceConfig

    def check_output(self, text: str, ctx) -> RuleResult:
        subject = getattr(ctx, "subject", None)
        # With a sku the catalog says what the product is (the catalog rule checks the photo against it).
        if subject is not None and subject.synset and not subject.people and subject.required > 0 and not ctx.sku:
            margin = subject.mass - subject.required
            if margin < self.config.subject_margin:
                return self.violation(
                    text,
                    None,
                    f"the drafter was unsure of {subject.name!r}: mass {subject.mass:.2f} is only {margin:.2f} above "
                    f"the {subject.required:.2f} needed to name it (margin {self.config.subject_margin:.2f})",
                    ctx,
                    code="subject.unsure",
                    subject=subject.name,
                    mass=subject.mass,
                    required=subject.required,
                )
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
