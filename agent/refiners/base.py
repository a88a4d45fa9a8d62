"""Stage 2 contract: a Refiner rewrites the best draft to a preset, a length budget and a locale."""

from __future__ import annotations

import asyncio
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from pydantic import BaseModel, ValidationError

from caption_agent.errors import ModelOutputError
from caption_agent.glossary import Glossary
from caption_agent.locales import language_name
from caption_agent.prompts import PromptBundle, StylePreset, render_messages
from caption_agent.schemas import DraftSubject, GroundingFact, RefinedCaption
from caption_agent.text import fit_length, repetition_loop

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_LABEL_PREFIX = re.compile(r"^\s*(caption|alt text|answer|output)\s*:\s*", re.IGNORECASE)


@dataclass
class RefineJob:
    """Everything a refiner may use. Facts and image text are already neutralised by the policy engine."""

    preset: StylePreset
    draft: str
    locale: str = "en-US"
    facts: Sequence[GroundingFact] = ()
    max_chars: int | None = None
    image_text: str = ""
    feedback: list[str] = field(default_factory=list)
    subject: DraftSubject | None = None  # the drafter's structured subject, when it gives one (template refiner)
    old_caption: str = ""  # the image's existing caption (recaptioning): cleaned, untrusted, not a grounding source
    glossary: Glossary | None = None  # the merchant's terms (policy rule `glossary`): the template renders by them
    constraints: list[str] = field(default_factory=list)  # glossary and register as prompt lines for LLM refiners

    @property
    def limit(self) -> int:
        """The length budget: the request's, never above the preset's for this locale (``budgets:``)."""
        budget = self.preset.limits(self.locale).max_chars or self.preset.max_chars
        return min(self.max_chars or budget, budget)

    def prompt(self) -> PromptBundle:
        return render_messages(
            self.preset,
            draft=self.draft,
            facts=self.facts,
            locale=self.locale,
            language=language_name(self.locale),
            max_chars=self.limit,
            image_text=self.image_text,
            feedback=self.feedback,
            old_caption=self.old_caption,
            constraints=self.constraints,
        )


class Refiner(ABC):
    """Base class of every refiner backend. Subclasses implement ``complete`` (messages -> raw text)."""

    name: ClassVar[str] = "base"
    model_id: str = ""
    # The same job always gives the same text (templates): the refine loop gives it one attempt, no regeneration.
    deterministic: ClassVar[bool] = False

    settings_model: ClassVar[type[BaseModel] | None] = None  # a registered backend's own settings section

    def __init__(self, settings: Any) -> None:  # noqa: B027 - the constructor the registry's callers use
        """Build the backend from its own settings section (``refiner.<name>``); load the model here."""

    def check_ready(self) -> object:
        """Readiness probe (the service's /readyz): a server-backed refiner runs a real request; raises when the
        backend cannot answer. Default: ready once built."""
        return None

    @abstractmethod
    def complete(self, messages: list[dict[str, str]], job: RefineJob) -> str:
        """Return the model's raw answer to the rendered messages."""

    async def acomplete(self, messages: list[dict[str, str]], job: RefineJob) -> str:
        return await asyncio.to_thread(self.complete, messages, job)

    def refine(self, job: RefineJob) -> RefinedCaption:
        """Render, generate, parse and enforce the length limit; ModelOutputError if unusable."""
        return parse_refined(self.complete(job.prompt().messages, job), job)

    async def arefine(self, job: RefineJob) -> RefinedCaption:
        return parse_refined(await self.acomplete(job.prompt().messages, job), job)

    def refine_many(self, jobs: Sequence[RefineJob]) -> list[RefinedCaption | Exception]:
        """Refine several jobs; a failed job yields its exception in place. Servers override for concurrency."""
        out: list[RefinedCaption | Exception] = []
        for job in jobs:
            try:
                out.append(self.refine(job))
            except Exception as exc:  # noqa: BLE001 - recorded per item by the caller
                out.append(exc)
        return out

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models or connections."""


def attribute_facts(caption: str, facts: Sequence[GroundingFact]) -> list[str]:
    """Ids of the facts whose value the caption states word for word (title, brand, category, an attribute
    value, or a sentence of the description), for refiners whose model does not list the facts it used."""
    text = " ".join(re.findall(r"\w+", caption.lower()))
    used = []
    for fact in facts:
        value = fact.fields.get(fact.field, "")
        phrases = [s for s in re.split(r"[.!?;]\s+", value) if len(s) >= 20] if fact.field == "description" else [value]
        for phrase in phrases:
            words = " ".join(re.findall(r"\w+", phrase.lower()))
            if len(words) >= 3 and re.search(rf"\b{re.escape(words)}\b", text):
                used.append(fact.id)
                break
    return used[:8]


def parse_refined(raw: str, job: RefineJob) -> RefinedCaption:
    """Turn a model answer (JSON, or plain text from weak models) into a RefinedCaption that fits the budget."""
    text = (raw or "").strip()
    caption, used = None, []
    match = _JSON_OBJECT.search(text)
    if match:
        try:
            data = json.loads(match.group(0))
            if isinstance(data, dict) and isinstance(data.get("caption"), str):
                caption = data["caption"]
                used = [str(x) for x in data.get("facts_used") or [] if isinstance(x, (str, int))]
        except json.JSONDecodeError:
            caption = None
    if caption is None:
        if text.startswith("{") or '"caption"' in text:
            raise ModelOutputError(f"refiner output is not valid JSON: {text[:120]!r}")
        caption = _LABEL_PREFIX.sub("", text.splitlines()[0] if text else "")
    caption = caption.strip().strip('"').strip()
    if len(caption) < max((job.preset.limits(job.locale).min_chars or 0) // 2, 2):
        raise ModelOutputError(f"refiner output is empty or too short: {caption!r}")
    if any(tag in caption.lower() for tag in ("<draft>", "<facts>", "json:", "</")):
        raise ModelOutputError(f"refiner output echoes the prompt: {caption[:120]!r}")
    if (unit := repetition_loop(caption)) is not None:  # small models fall into decoding loops
        raise ModelOutputError(f"refiner output repeats {unit!r} in a loop: {caption[:120]!r}")
    known = {f.id for f in job.facts}
    if any(fid.lower() in caption.lower() for fid in known):  # weak models copy fact ids instead of facts
        raise ModelOutputError(f"refiner output quotes a fact id instead of writing a caption: {caption[:120]!r}")
    try:
        caption = fit_length(caption, job.limit)
        if job.preset.max_clip_tokens:  # e.g. dataset_recaption: CLIP's text encoder sees at most 77 tokens
            from caption_agent.clip_tokens import fit_clip_tokens

            caption = fit_clip_tokens(caption, job.preset.max_clip_tokens)
        return RefinedCaption(caption=caption, facts_used=[u for u in used if u in known][:8])
    except ValidationError as exc:
        raise ModelOutputError(f"refiner output breaks the schema: {exc}") from exc
