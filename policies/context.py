"""What the policy engine knows about one request while it moderates."""

from __future__ import annotations

from dataclasses import dataclass, field

from caption_agent.prompts import StylePreset
from caption_agent.schemas import DraftSubject, GroundingFact, PolicyDecision


@dataclass
class ModerationContext:
    """Inputs of one moderation. Pass the same object to ``prepare_inputs`` and every ``judge``/``review`` call,
    or contexts that share its ``neutralised`` and ``input_flags`` lists (the pipeline derives one per call from
    the item's state: ``CaptionState.moderation``): ``prepare_inputs`` records there what it neutralised, so that
    ``review`` can catch a caption that follows an injected instruction anyway.

    ``facts`` and ``image_text`` may be the raw or the prepared versions; grounding accepts either.
    """

    preset: StylePreset
    locale: str
    draft: str
    facts: list[GroundingFact] = field(default_factory=list)
    image_text: str = ""
    max_chars: int | None = None
    # Faces the image safety rule counted; None: not known (no screening, detector missing or failed).
    faces: int | None = None
    # The sku the request names (None: none): a style that requires the product's name checks its title.
    sku: str | None = None
    attempts_left: int = 0
    is_fallback: bool = False
    confidence: float | None = None
    # The drafter's structured subject (the lite tagger's hedge; None from a VLM): how sure it was of the name.
    subject: DraftSubject | None = None
    # True when ``review`` checks a reviewer's edit (verdicts.check_edit): rules that would rewrite the text
    # refuse it instead where the policy says so (markup: on_edit).
    human_edit: bool = False
    # Filled by prepare_inputs: instruction-like sentences removed from untrusted text ...
    neutralised: list[str] = field(default_factory=list)
    # ... and input decisions that must raise the final action (a rule that crashed on inputs, or a policy
    # that sends any injection attempt to review). review() folds these into its outcome.
    input_flags: list[PolicyDecision] = field(default_factory=list)

    @property
    def limit(self) -> int:
        """The length budget: the request's, never above the preset's."""
        return min(self.max_chars or self.preset.max_chars, self.preset.max_chars)

    def sources(self, *, image_text: bool = True, trusted_only: bool = False) -> list[tuple[str, str]]:
        """Texts that may support a claim, as (source id, text): the draft, every fact, the image text.

        ``trusted_only`` cuts instruction-like passages out of facts and image text: what an injected
        instruction says supports nothing."""
        out = [("draft", self.draft)]
        for fact in self.facts:
            out.append((f"fact:{fact.id}", fact.text))
            for key, value in fact.fields.items():
                out.append((f"fact:{fact.sku}:{key}", str(value)))
        if image_text and self.image_text:
            out.append(("image_text", self.image_text))
        if trusted_only:
            from caption_agent.policies.rules.injection import strip_instructions

            out = [(sid, text if sid == "draft" else strip_instructions(text, self.neutralised)) for sid, text in out]
        return out
