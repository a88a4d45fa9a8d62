"""The Rule base class, the per-rule config base and the rule registry.

A rule checks one thing at up to three points: the image (before any text), the untrusted inputs (before the
prompt) and the refined caption (after refinement). Each check returns a ``RuleResult``: the rule's decision(s),
the possibly fixed text and feedback for a regenerate. The engine turns exceptions into fail-closed decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from caption_agent.registry import Registry
from caption_agent.schemas import ACTION_SEVERITY, Action, PolicyDecision

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from caption_agent.policies.context import ModerationContext
    from caption_agent.schemas import ImageInfo

Exhausted = Literal["redact", "fallback", "review", "block"]
OnDraft = Literal["allow", "redact", "review", "block"]
OnError = Literal["review", "block"]


class RuleConfig(BaseModel):
    """Settings every rule has. ``redact`` means "fix the text in place" (mask, trim, cut, rewrite)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run this rule. Disabled rules still record a 'disabled' decision.")
    action: Action = Field(
        "review",
        description="What a violation does: allow (record only), redact (fix in "
        "place), regenerate (refiner retries with feedback), fallback (use the ranked draft), "
        "review (human queue) or block.",
    )
    on_exhausted: Exhausted = Field("review", description="Replaces 'regenerate' when no attempts are left.")
    on_draft: OnDraft = Field(
        "review",
        description="Replaces 'regenerate'/'fallback' when the text already is "
        "the ranked draft, so neither is possible.",
    )
    on_error: OnError = Field("review", description="Action when the rule itself fails: it never fails open.")

    # Rules that cannot edit text set this to False in their config subclass; 'redact' is then refused.
    can_fix: ClassVar[bool] = True

    @model_validator(mode="after")
    def _redact_needs_fix(self) -> RuleConfig:
        if not self.can_fix:
            for name in ("action", "on_exhausted", "on_draft"):
                if getattr(self, name) == "redact":
                    raise ValueError(
                        f"{name}: 'redact' is not possible for this rule, it cannot edit text; "
                        "use regenerate, fallback, review or block"
                    )
        return self


@dataclass
class RuleResult:
    """What one rule check produced."""

    decisions: list[PolicyDecision]
    text: str
    feedback: list[str] = field(default_factory=list)

    @property
    def action(self) -> Action:
        return strongest(d.action for d in self.decisions)


def strongest(actions: Any) -> Action:
    """The most severe action (agent.schemas.ACTION_SEVERITY); 'allow' for none."""
    best: Action = "allow"
    for action in actions:
        if ACTION_SEVERITY[action] > ACTION_SEVERITY[best]:
            best = action
    return best


class Rule:
    """Base of every rule. Subclasses set ``name``/``config_model`` and override the checks they support."""

    name: ClassVar[str] = "base"
    config_model: ClassVar[type[RuleConfig]] = RuleConfig
    stages: ClassVar[frozenset[str]] = frozenset()  # subset of {"image", "inputs", "output"}

    def __init__(self, config: RuleConfig) -> None:
        self.config = config

    # -- checks (override) ------------------------------------------------------------------------------
    def check_image(self, image: Image.Image, info: ImageInfo, ctx: ModerationContext | None) -> RuleResult:
        raise NotImplementedError

    def check_input(self, text: str, source: str, ctx: ModerationContext) -> RuleResult:
        raise NotImplementedError

    def check_output(self, text: str, ctx: ModerationContext) -> RuleResult:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------------------
    def resolve(self, wanted: Action, ctx: ModerationContext | None, fixed: bool = True) -> tuple[Action, str]:
        """Turn the configured action into one that is possible now, saying why when it changed."""
        action, notes = wanted, []
        if action == "regenerate" and ctx is not None and not ctx.is_fallback and ctx.attempts_left <= 0:
            action = self.config.on_exhausted
            notes.append(f"no regenerate attempts left -> {action}")
        if action in ("regenerate", "fallback") and ctx is not None and ctx.is_fallback:
            action = self.config.on_draft
            notes.append(f"text is the ranked draft -> {action}")
        if action == "redact" and not fixed:
            action = "review"
            notes.append("could not fix in place, sent to review")
        return action, "; ".join(notes)

    def allow(self, text: str, reason: str, **details: Any) -> RuleResult:
        return RuleResult([PolicyDecision(rule=self.name, action="allow", reason=reason, details=details)], text)

    def violation(
        self,
        text: str,
        fixed_text: str | None,
        reason: str,
        ctx: ModerationContext | None,
        feedback: str | None = None,
        wanted: Action | None = None,
        private: bool = False,
        **details: Any,
    ) -> RuleResult:
        """Record a violation: resolve the action, keep the fix unless the rule only monitors.

        ``private`` keeps the original text out of the decision (it holds the PII that was masked)."""
        action, note = self.resolve(wanted or self.config.action, ctx, fixed=fixed_text is not None)
        if note:
            reason = f"{reason} ({note})"
        keep = fixed_text if (fixed_text is not None and action != "allow") else text
        decision = PolicyDecision(
            rule=self.name,
            action=action,
            reason=reason,
            before=text if keep != text and not private else None,
            after=keep if keep != text else None,
            details=details,
        )
        return RuleResult([decision], keep, [feedback] if feedback and action == "regenerate" else [])


RULES: Registry[Rule] = Registry(
    "policy rule",
    {
        "image_safety": "caption_agent.policies.rules.image_safety:ImageSafetyRule",
        "injection": "caption_agent.policies.rules.injection:InjectionRule",
        "markup": "caption_agent.policies.rules.markup:MarkupRule",
        "pii": "caption_agent.policies.rules.pii:PiiRule",
        "blocklist": "caption_agent.policies.rules.blocklist:BlocklistRule",
        "people": "caption_agent.policies.rules.people:PeopleRule",
        "grounding": "caption_agent.policies.rules.grounding:GroundingRule",
        "style": "caption_agent.policies.rules.style:StyleRule",
        "coherence": "caption_agent.policies.rules.coherence:CoherenceRule",
        "informative": "caption_agent.policies.rules.informative:InformativeRule",
        "faithful": "caption_agent.policies.rules.faithful:FaithfulRule",
        "language": "caption_agent.policies.rules.language:LanguageRule",
        "confidence": "caption_agent.policies.rules.confidence:ConfidenceRule",
        "glossary": "caption_agent.policies.rules.glossary:GlossaryRule",
        "catalog": "caption_agent.policies.rules.catalog:CatalogRule",
    },
)
