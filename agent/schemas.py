"""Typed contracts between the stages. Models users write are strict (``extra="forbid"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Action = Literal["allow", "redact", "regenerate", "fallback", "block", "review"]
Status = Literal["ok", "review", "blocked", "error"]

# Severity order used to combine rule actions: the strongest wins.
ACTION_SEVERITY: dict[str, int] = {"allow": 0, "redact": 1, "regenerate": 2, "fallback": 3, "review": 4, "block": 5}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductHint(_Strict):
    """What the caller knows about the product in the image; used as retrieval filters."""

    sku: str | None = Field(None, description="Exact product id in the catalog.", max_length=128)
    brand: str | None = Field(None, description="Brand name, matched exactly.", max_length=128)
    category: str | None = Field(None, description="Catalog category, matched exactly.", max_length=128)

    def is_empty(self) -> bool:
        return not (self.sku or self.brand or self.category)


class CaptionRequest(_Strict):
    """One captioning request. ``image`` is a file path or raw bytes."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    image: Path | str | bytes = Field(description="Path to an image file, or its bytes.")
    style: str = Field("alt_text", description="Style preset name (see `caption-agent styles`).")
    locale: str = Field("en-US", description="BCP-47 locale of the output caption.")
    hint: ProductHint = Field(default_factory=ProductHint, description="Product hint for grounding.")
    n_candidates: int | None = Field(None, ge=1, le=32, description="Drafts to generate; config default if unset.")
    max_chars: int | None = Field(None, ge=10, le=5000, description="Tighter length budget than the preset's.")
    key: str | None = Field(None, description="Caller's id for this item, echoed in the result.")
    drafter: str | None = Field(
        None,
        description="Drafter backend for this item (lite | transformers | vllm); the config's when unset.",
        max_length=64,
    )
    old_caption: str | None = Field(
        None,
        max_length=4000,
        description="The image's existing caption (dataset text, alt text) to improve: untrusted context for the "
        "refiner, cleaned like catalog text; never a grounding source.",
    )

    def image_label(self) -> str:
        return "<bytes>" if isinstance(self.image, bytes) else str(self.image)


class ImageInfo(BaseModel):
    source: str = Field(description="Path, or '<bytes>'.")
    sha256: str
    width: int = Field(description="Original width (EXIF orientation applied).")
    height: int = Field(description="Original height (EXIF orientation applied).")
    format: str | None = None
    working_width: int | None = Field(None, description="Width of the bounded working copy the stages used.")
    working_height: int | None = Field(None, description="Height of the bounded working copy the stages used.")
    faces: int | None = Field(None, description="People (faces) the image screen counted; None when none looked.")
    text_boxes: list[list[float]] | None = Field(
        None,
        description="Where text was read in the working copy: [[x0, y0, x1, y1, score]] in its pixels, at most "
        "32 (the largest lines; the text itself is in the result's image_text); None when no text reader ran.",
    )


class Candidate(BaseModel):
    """A draft caption from stage 1, with what it is based on."""

    text: str
    drafter: str = Field(description="Registry name of the drafter that wrote it.")
    score: float = Field(description="Drafter's own score (probability-like, in [0, 1]).")
    logprob: float | None = Field(None, description="Sequence log-probability when the model gives one.")
    evidence: list[str] = Field(default_factory=list, description="Labels, colours or text it rests on.")
    rank_score: float | None = Field(None, description="Ranker's score; set by the ranking stage.")


class DraftSubject(BaseModel):
    """What a draft is about, hedged up WordNet 3.0 (the lite tagger sets it; VLM drafters leave it unset)."""

    name: str = Field(
        "", description="Basic-level name with its article ('a cat', 'a person'); '' when nothing was named."
    )
    synset: str | None = Field(None, description="WordNet 3.0 noun id of the name ('n02121620'); None if unnamed.")
    mass: float = Field(0.0, ge=0.0, le=1.0, description="Classifier probability under that synset (1 for people).")
    required: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="The mass the hedge needed to name it (0 for people or when unnamed): mass - required is how "
        "sure the drafter was (the confidence rule's subject_margin).",
    )
    people: int = Field(0, ge=0, description="People seen (the screen's face count); the draft is about them if > 0.")
    context: list[str] = Field(default_factory=list, description="Objects or garments named beside the people.")
    synsets: list[str] = Field(
        default_factory=list,
        description="The named synsets and all their WordNet ancestors: a product found by similarity is relevant "
        "only if its category maps to one of these (the retrieval relevance gate).",
    )


class Draft(BaseModel):
    """Everything stage 1 learnt about one image."""

    image: ImageInfo
    candidates: list[Candidate]
    labels: list[tuple[str, float]] = Field(default_factory=list, description="Top classifier labels.")
    colors: list[str] = Field(default_factory=list, description="Dominant colour names, strongest first.")
    image_text: str = Field("", description="Text read from the image (untrusted).")
    model_id: str = ""
    subject: DraftSubject | None = Field(None, description="The hedged subject; None when the drafter gives none.")


class GroundingFact(BaseModel):
    """A fact retrieved from the catalog. ``id`` is '<sku>:<field>' so later stages can cite it."""

    id: str
    sku: str
    field: str
    text: str
    score: float = Field(description="Relevance in [0, 1] (1 = identical).")
    fields: dict[str, str] = Field(default_factory=dict, description="Structured product fields.")


class RefinedCaption(BaseModel):
    """Stage 2 output. Every string is bounded so constrained decoding always terminates."""

    caption: str = Field(description="The rewritten caption.", min_length=1, max_length=600)
    facts_used: list[str] = Field(
        default_factory=list, max_length=8, description="Ids of the facts the caption relies on."
    )
    notes: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Why earlier answers of this refinement were rejected (refiner's own "
        "schema retries); not part of the model's output schema.",
    )

    @field_validator("facts_used")
    @classmethod
    def _bound_ids(cls, value: list[str]) -> list[str]:
        return [v[:64] for v in value]


class PolicyDecision(BaseModel):
    """One rule's verdict, recorded whatever it was."""

    rule: str
    action: Action
    reason: str
    before: str | None = None
    after: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class HoldReason(BaseModel):
    """Why a result was not published, as data a review desk and reports can use.

    ``code`` is stable and machine-readable (``subject.unnamed``, ``pii.email``, ``refiner.unavailable``…);
    ``message`` says what is wrong in a reviewer's words; ``fix`` says what would make it publishable;
    ``detail`` is the rule's technical wording, shown one click away."""

    code: str = Field(description="Stable machine-readable reason code, '<area>.<what>'.")
    message: str = Field(description="What is wrong, in a reviewer's words.")
    fix: str = Field("", description="What would make the result publishable.")
    detail: str = Field("", description="The technical detail (rule name, scores, the rule's own wording).")
    rule: str = Field("", description="The rule or stage that raised it.")


class ModerationOutcome(BaseModel):
    action: Action
    text: str
    decisions: list[PolicyDecision] = Field(default_factory=list)
    feedback: list[str] = Field(default_factory=list, description="Hints for a regenerate attempt.")


class Provenance(BaseModel):
    drafter: str = ""
    drafter_model: str = ""
    ranker: str = ""
    embedder: str = ""
    refiner: str = ""
    refiner_model: str = ""
    prompt_version: str = ""
    prompt_hash: str = ""
    policy_version: str = ""
    policy_hash: str = ""
    refine_attempts: int = 0
    refined_by: str = Field(
        "",
        description="The link of the refiner chain that wrote the published text: a refiner backend (vllm, "
        "local, template), 'draft' (the ranked draft or the source caption), or '' when none was published.",
    )
    fallbacks: list[str] = Field(default_factory=list, description="Why a stage fell back, if it did.")
    timings_ms: dict[str, float] = Field(default_factory=dict)
    package_version: str = ""


class ErrorRecord(BaseModel):
    type: str
    message: str
    stage: str = ""


class CaptionResult(BaseModel):
    """What the agent returns for one image."""

    key: str | None = None
    status: Status
    text: str | None = None
    style: str
    locale: str
    image: ImageInfo | None = None
    draft: str | None = Field(None, description="The ranked best draft.")
    candidates: list[Candidate] = Field(default_factory=list)
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    facts: list[GroundingFact] = Field(default_factory=list)
    facts_used: list[str] = Field(default_factory=list)
    decision: Action | None = None
    decisions: list[PolicyDecision] = Field(default_factory=list)
    reasons: list[HoldReason] = Field(
        default_factory=list, description="Why the result is held (status review/blocked): one entry per cause."
    )
    provenance: Provenance = Field(default_factory=Provenance)
    error: ErrorRecord | None = None
    subject: DraftSubject | None = Field(
        None, description="The drafted subject (structured): what localization names in another language."
    )
    image_text: str = Field(
        "", description="Text read from the image (untrusted, cleaned by the policy): quoted, never translated."
    )
    hint: ProductHint | None = Field(
        None,
        description="The request's product hint (sku, brand, category), kept so that another attempt from the "
        "review desk grounds on the same product; None when the request gave none.",
    )
