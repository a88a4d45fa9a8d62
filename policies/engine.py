"""The policy engine: runs the rules of a policy file at the three moderation points.

* ``screen_image`` — before any text: image safety (and the face count the people rule needs, or None
  when the detector did not look);
* ``prepare_inputs`` — before the prompt: PII masked and instruction-like text cut out of untrusted text;
* ``judge`` — after refinement: every rule on the caption; the strongest action wins (``judge_draft``: the draft
  judged as a stand-in; ``review``: both, for one-shot checks).

The engine judges; it never decides what happens next (``caption_agent.stages.decide`` does).

Every rule records a decision, also when it allows. A rule that raises takes its ``on_error`` action (review
or block) and says why: the engine never fails open.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caption_agent.canonical import ByteLRU
from caption_agent.config_sections import PolicySettings
from caption_agent.policies.backend import PolicyBackend
from caption_agent.policies.context import ModerationContext
from caption_agent.policies.rules.base import RULES, Rule, RuleResult, strongest
from caption_agent.policies.schema import LoadedPolicy, RulesConfig, load_policy
from caption_agent.schemas import GroundingFact, ImageInfo, ModerationOutcome, PolicyDecision

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)

_INPUT_RULES = ("pii", "injection", "blocklist")  # PII first: an injected URL is masked, then the clause cut


class PolicyEngine(PolicyBackend):
    """Applies one policy file. Thread-safe; models (NudeNet, langdetect profiles) load once, lazily."""

    name = "rules"

    def __init__(self, loaded: LoadedPolicy) -> None:
        self._loaded = loaded
        self.version: str = loaded.version
        self.hash: str = loaded.hash
        self.path: str = loaded.path
        self._rules: dict[str, list[Rule]] = {}
        self._lock = threading.Lock()
        # cleaned input text -> the passages cut out of it, so that review() can compare a caption with what an
        # injection asked for even when the caller builds a fresh ModerationContext (process-local, bounded by
        # bytes: a 2 MB fact must not pin 2 MB per entry of a count-bounded cache).
        self._removed: ByteLRU[str, tuple[str, ...]] = ByteLRU(
            16 << 20, lambda text, passages: sys.getsizeof(text) + sum(sys.getsizeof(p) for p in passages)
        )

    @classmethod
    def load(cls, path: Path | str | None = None) -> PolicyEngine:
        """Load and validate a policy file; the bundled ``policies/default.yaml`` when ``path`` is None.

        Raises agent.errors.PolicyError naming every wrong key."""
        return cls(load_policy(path))

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> PolicyEngine:
        return cls.load(settings.file)

    @property
    def policy(self) -> LoadedPolicy:
        return self._loaded

    def rules(self, preset: str) -> list[Rule]:
        """The rules in force for a style preset, in the order they run."""
        with self._lock:
            if preset not in self._rules:
                config = self._loaded.rules_for(preset)
                self._rules[preset] = [RULES.get(name)(getattr(config, name)) for name in RulesConfig.model_fields]
            return self._rules[preset]

    def _rule(self, preset: str, name: str) -> Rule:
        return next(r for r in self.rules(preset) if r.name == name)

    # -- 1. the image ---------------------------------------------------------------------------------------
    def screen_image(
        self, image: Image.Image, info: ImageInfo, preset: str = ""
    ) -> tuple[ModerationOutcome, int | None]:
        """Image safety before any text is written, with the settings of style ``preset``: (outcome, number of
        faces). The face count is None when the detector did not look (not installed, failed, or the rule is
        disabled): the people rule then acts on its ``if_unavailable``, never on "no faces"."""
        rule = self._rule(preset, "image_safety")
        result = self._run(rule, "image", lambda: rule.check_image(image, info, None), "")
        faces = None
        if result.decisions and rule.config.enabled:
            details = result.decisions[0].details
            if not details.get("skipped") and not details.get("error") and details.get("faces") is not None:
                faces = int(details["faces"])
        return ModerationOutcome(action=result.action, text="", decisions=result.decisions), faces

    # -- 2. untrusted inputs --------------------------------------------------------------------------------
    def prepare_inputs(
        self, facts: list[GroundingFact], image_text: str, ctx: ModerationContext
    ) -> tuple[list[GroundingFact], str, list[PolicyDecision]]:
        """Mask PII and cut instruction-like text out of catalog facts and image text before the prompt.

        Text a rule could not vet is dropped (fail closed) and flagged so that ``review`` escalates."""
        rules = [r for r in self.rules(ctx.preset.name) if r.name in _INPUT_RULES and r.config.enabled]
        decisions = [
            PolicyDecision(rule=r.name, action="allow", reason="disabled by the policy")
            for r in self.rules(ctx.preset.name)
            if r.name in _INPUT_RULES and not r.config.enabled
        ]

        seen: dict[str, tuple[str | None, list[int]]] = {}  # text -> (cleaned, its decisions' indices)

        def clean(text: str, source: str) -> str | None:
            # One text found in several places (a fact's text and its fields, the same description under every
            # fact of a product) is cleaned once and its decisions recorded once, listing every place.
            if text in seen:
                cleaned, indices = seen[text]
                for i in indices:
                    d = decisions[i]
                    places = [*d.details.get("sources", [d.details.get("source", "")]), source]
                    decisions[i] = d.model_copy(
                        update={"details": {**d.details, "sources": list(dict.fromkeys(places))}}
                    )
                return cleaned
            start = len(decisions)
            cleaned = self._clean_remembered(rules, text, source, ctx, decisions)
            seen[text] = (cleaned, list(range(start, len(decisions))))
            return cleaned

        out_facts: list[GroundingFact] = []
        for fact in facts:
            text = clean(fact.text, f"fact {fact.id}")
            fields: dict[str, str] = {}
            for key, value in fact.fields.items():
                cleaned = clean(str(value), f"fact {fact.sku} field {key}")
                if cleaned is not None:
                    fields[key] = cleaned
            if text is not None:
                out_facts.append(fact.model_copy(update={"text": text, "fields": fields}))
        cleaned_image_text = clean(image_text, "image text") if image_text else ""
        if not decisions:
            decisions.append(
                PolicyDecision(
                    rule="inputs",
                    action="allow",
                    reason=f"{len(facts)} fact(s) and {len(image_text)} chars of image text vetted; nothing to change",
                )
            )
        return out_facts, cleaned_image_text or "", decisions

    def clean_text(self, text: str, source: str, ctx: ModerationContext) -> tuple[str, list[PolicyDecision]]:
        """One more untrusted text (a dataset row's existing caption) cleaned as ``prepare_inputs`` cleans catalog
        text: instructions cut, PII masked; "" when no rule could vet it (fail closed). Not a grounding source."""
        rules = [r for r in self.rules(ctx.preset.name) if r.name in _INPUT_RULES and r.config.enabled]
        decisions: list[PolicyDecision] = []
        cleaned = self._clean_remembered(rules, text, source, ctx, decisions)
        return cleaned or "", decisions

    def _clean_remembered(
        self, rules: list[Rule], text: str, source: str, ctx: ModerationContext, decisions: list[PolicyDecision]
    ) -> str | None:
        before = len(ctx.neutralised)
        cleaned = self._clean(rules, text, source, ctx, decisions)
        if cleaned is not None and len(ctx.neutralised) > before:
            self._remember(cleaned, ctx.neutralised[before:])
        return cleaned

    def _clean(
        self, rules: list[Rule], text: str, source: str, ctx: ModerationContext, decisions: list[PolicyDecision]
    ) -> str | None:
        for rule in rules:
            result = self._run(rule, "inputs", lambda: rule.check_input(text, source, ctx), text)
            decisions.extend(d for d in result.decisions if d.action != "allow")
            if result.decisions and result.decisions[0].details.get("error"):
                ctx.input_flags.extend(result.decisions)
                return None  # fail closed: text no rule could vet does not reach the prompt
            text = result.text
        return text

    def _remember(self, cleaned: str, passages: list[str]) -> None:
        rest = cleaned
        for rule in self.rules(""):
            for placeholder in rule.placeholders():
                rest = rest.replace(placeholder, "")
        if len(rest.strip()) < 8:  # nothing but the placeholder: too common a key to tie to one request
            return
        with self._lock:
            known = self._removed.get(cleaned) or ()
            self._removed.put(cleaned, tuple(dict.fromkeys([*known, *passages]))[-20:])

    def _recall(self, ctx: ModerationContext) -> None:
        """Add to ``ctx.neutralised`` what prepare_inputs cut from the (cleaned) texts this context carries."""
        texts = [ctx.image_text] + [f.text for f in ctx.facts] + [v for f in ctx.facts for v in f.fields.values()]
        found = [p for t in texts for p in self._removed.get(t) or ()]
        ctx.neutralised.extend(p for p in dict.fromkeys(found) if p not in ctx.neutralised)

    # -- 3. the caption -------------------------------------------------------------------------------------
    def judge(
        self, text: str, ctx: ModerationContext, only: frozenset[str] | set[str] | None = None
    ) -> ModerationOutcome:
        """Every rule on ``text``; the action is the strongest one, ``text`` the fixed caption. A judgment only:
        what happens next (a retry, another refiner, the draft standing in) is the caller's to decide
        (``caption_agent.stages.decide``). ``only`` restricts the run to the named rules."""
        self._recall(ctx)
        return self._review(text, ctx, only)

    def judge_draft(
        self, verdict: ModerationOutcome, ctx: ModerationContext, only: frozenset[str] | set[str] | None = None
    ) -> ModerationOutcome:
        """The draft (``ctx.draft``) judged as the stand-in for a text whose ``verdict`` was ``fallback``: the
        verdict's decisions, then the draft's (marked ``details.pass = "draft"``); the action stays ``fallback``
        when the draft passes (allow, redact), else it is the draft's own; ``text`` is the moderated draft."""
        draft_ctx = ModerationContext(
            **{
                **ctx.__dict__,
                "is_fallback": True,
                "attempts_left": 0,
                "neutralised": ctx.neutralised,
                "input_flags": ctx.input_flags,
            }
        )
        second = self._review(ctx.draft, draft_ctx, only)
        marked = [d.model_copy(update={"details": {**d.details, "pass": "draft"}}) for d in second.decisions]
        action = "fallback" if second.action in ("allow", "redact") else second.action
        return ModerationOutcome(
            action=action, text=second.text, decisions=verdict.decisions + marked, feedback=verdict.feedback
        )

    def review(
        self, text: str, ctx: ModerationContext, only: frozenset[str] | set[str] | None = None
    ) -> ModerationOutcome:
        """The one-shot check (policy evals, a reviewer's edit): ``judge``, and on a ``fallback`` verdict also
        ``judge_draft``, so that ``text`` is what would be published (allow, redact or fallback). The caption
        pipeline calls the two itself, when its decision lets the draft stand in."""
        outcome = self.judge(text, ctx, only)
        if outcome.action != "fallback" or ctx.is_fallback:
            return outcome
        return self.judge_draft(outcome, ctx, only)

    def _review(self, text: str, ctx: ModerationContext, only: frozenset[str] | set[str] | None) -> ModerationOutcome:
        decisions: list[PolicyDecision] = []
        feedback: list[str] = []
        current = text
        for rule in self.rules(ctx.preset.name):
            if "output" not in rule.stages or (only is not None and rule.name not in only):
                continue
            if not rule.config.enabled:
                decisions.append(PolicyDecision(rule=rule.name, action="allow", reason="disabled by the policy"))
                continue
            result = self._run(rule, "output", lambda: rule.check_output(current, ctx), current)
            decisions.extend(result.decisions)
            feedback.extend(result.feedback)
            current = result.text
        decisions.extend(ctx.input_flags)
        action = strongest(d.action for d in decisions)
        if action != "regenerate":
            feedback = []
        return ModerationOutcome(action=action, text=current, decisions=decisions, feedback=feedback)

    # -- fail closed ----------------------------------------------------------------------------------------
    def _run(self, rule: Rule, stage: str, call: Any, text: str) -> RuleResult:
        if not rule.config.enabled:
            return RuleResult([PolicyDecision(rule=rule.name, action="allow", reason="disabled by the policy")], text)
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - any failure becomes a recorded, closed decision
            log.warning("policy rule %s failed at %s: %r", rule.name, stage, exc)
            action = rule.config.on_error
            reason = f"rule failed ({type(exc).__name__}: {str(exc)[:200]}); failing closed: {action}"
            return RuleResult(
                [
                    PolicyDecision(
                        rule=rule.name,
                        action=action,
                        reason=reason,
                        details={"error": type(exc).__name__, "stage": stage},
                    )
                ],
                text,
            )
