"""The Rule base class, the per-rule config base and the rule registry.

A rule is one module in this package: a ``Rule`` subclass that declares its ``name``, its settings model
(``config_model``), where it runs among the others (``order``) and whether policy files must list it
(``required``). ``RULES`` finds the modules on first use and the policy schema (``policies/schema.py``) derives
its rule names and settings from them, so adding a rule is adding its module (docs/policies.md, "Adding a rule").

A rule checks one thing at up to three points: the image (before any text), the untrusted inputs (before the
prompt) and the refined caption (after refinement). Each check returns a ``RuleResult``: the rule's decision(s),
the possibly fixed text and feedback for a regenerate. The engine turns exceptions into fail-closed decisions.
"""

from __future__ import annotations

import importlib
import pkgutil
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
    """Base of every rule. Subclasses declare ``name``, ``config_model``, ``order`` and ``stages`` (and
    ``required``) and override the checks they support."""

    name: ClassVar[str] = "base"  # the rule's key under ``rules:`` in a policy file, and in every decision
    config_model: ClassVar[type[RuleConfig]] = RuleConfig  # its settings; their defaults apply when a file omits it
    # Where it runs on a caption (lower first; the built-in rules use 10, 20, ... 150, so a new one fits between).
    order: ClassVar[int] = 1000
    # A policy file must list it (unless it ``extends: default``), so a file written without it is refused instead
    # of running it on defaults. New rules leave this False: files written before the rule existed stay valid.
    required: ClassVar[bool] = False
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

    def placeholders(self) -> tuple[str, ...]:
        """The marks this rule writes where it cut text out (the engine ignores them when it remembers cuts)."""
        return ()

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


def _declared_rules() -> dict[str, str | type[Rule]]:
    """Every Rule subclass defined in a module of this package, by name (imports each module once)."""
    from caption_agent.policies import rules as package

    found: dict[str, str | type[Rule]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            # A rule is a class defined here that names itself (a subclass that keeps its parent's name is not).
            own = isinstance(obj, type) and obj.__module__ == module.__name__ and "name" in vars(obj)
            if own and issubclass(obj, Rule) and obj is not Rule:
                if obj.name in found:
                    raise TypeError(f"two policy rules are named {obj.name!r}: {found[obj.name]} and {obj}")
                found[obj.name] = obj
    return found


# Rules register themselves by being a module here; ``RULES.register(name, "pkg.module:Class")`` adds one from
# another package (before the policy schema is imported: the schema's rule names are read once).
RULES: Registry[Rule] = Registry("policy rule", {}, discover=_declared_rules)


def rule_classes() -> list[type[Rule]]:
    """Every rule, in the order they run on a caption (``order``, then name)."""
    return sorted((RULES.get(name) for name in RULES.names()), key=lambda rule: (rule.order, rule.name))
