"""CaptionAgent: draft -> rank -> ground -> refine -> moderate, for one image or a batch.

The stages are public objects (``caption_agent.stages``) run over one ``CaptionState`` per item; the agent holds
their components (loaded lazily, once) and runs a batch stage by stage so that batched backends (drafter forward
passes, concurrent vLLM requests) stay busy. A failing item becomes an error record; the rest of the batch goes on.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Sequence

from caption_agent.config import AgentConfig
from caption_agent.errors import CaptionAgentError
from caption_agent.ranking import Ranker
from caption_agent.schemas import CaptionRequest, CaptionResult, ProductHint
from caption_agent.stages import Stages, stages_of
from caption_agent.stages.components import NAMES, Components
from caption_agent.stages.moderate import queue_for_review
from caption_agent.state import CaptionState

ImageLike = Path | str | bytes


class CaptionAgent(Components):
    """The public entry point. Models load on first use and are reused across calls."""

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        drafter: Any = None,
        ranker: Ranker | None = None,
        retriever: Any = None,
        refiner: Any = None,
        policy: Any = None,
        embedder: Any = None,
    ) -> None:
        """Stages passed in (already loaded models shared between agents, or test fakes) are used as they are
        and never closed by this agent; the others are built from ``config`` on first use."""
        super().__init__(
            config,
            drafter=drafter,
            ranker=ranker,
            retriever=retriever,
            refiner=refiner,
            policy=policy,
            embedder=embedder,
        )

    @cached_property
    def stages(self) -> Stages:
        """screen -> draft -> rank -> ground -> refine -> moderate, over this agent's components."""
        return stages_of(self)

    # --- public API ----------------------------------------------------------------------------------------------
    def caption(
        self,
        image: ImageLike,
        *,
        style: str | None = None,
        locale: str | None = None,
        sku: str | None = None,
        brand: str | None = None,
        category: str | None = None,
        n_candidates: int | None = None,
        max_chars: int | None = None,
    ) -> CaptionResult:
        """Caption one image. Bad input raises a CaptionAgentError that says how to fix it."""
        request = self.make_request(
            image,
            style=style,
            locale=locale,
            sku=sku,
            brand=brand,
            category=category,
            n_candidates=n_candidates,
            max_chars=max_chars,
        )
        state = CaptionState.of(request)
        self.run([state])
        result = state.done
        if result.status == "error" and result.error is not None and result.error.stage == "input":
            raise state.exc or CaptionAgentError(result.error.message)
        return result

    def make_request(self, image: ImageLike, **fields: Any) -> CaptionRequest:
        hint = ProductHint(
            sku=fields.pop("sku", None), brand=fields.pop("brand", None), category=fields.pop("category", None)
        )
        fields = {k: v for k, v in fields.items() if v is not None}
        fields.setdefault("style", self.config.default_style)
        fields.setdefault("locale", self.config.default_locale)
        return CaptionRequest(image=image, hint=hint, **fields)

    def caption_batch(self, items: Iterable[CaptionRequest | ImageLike]) -> list[CaptionResult]:
        """Caption many images; every input yields exactly one result, in order (errors as records).

        A CaptionRequest that leaves style or locale unset gets the config's defaults, as a path does."""
        states = [CaptionState.of(self.as_request(i)) for i in items]
        self.run(states)
        return [s.done for s in states]

    def as_request(self, item: CaptionRequest | ImageLike) -> CaptionRequest:
        return self.with_defaults(item) if isinstance(item, CaptionRequest) else self.make_request(item)

    def with_defaults(self, request: CaptionRequest) -> CaptionRequest:
        """``request`` with the config's default style and locale where the caller set none."""
        unset = {"style": self.config.default_style, "locale": self.config.default_locale}
        update = {k: v for k, v in unset.items() if k not in request.model_fields_set}
        return request.model_copy(update=update) if update else request

    def run(self, states: Sequence[CaptionState], stages: Stages | None = None) -> None:
        """Run ``stages`` (all of them by default) over ``states``; a batch that ends with the moderate stage sends
        its held results to the review queue (when the config names one)."""
        stages = stages or self.stages
        stages.run(states)
        if stages.names and stages.names[-1] == "moderate":
            queue_for_review(self.config, [s.result for s in states if s.result is not None])

    def localize(
        self, result: CaptionResult, locales: Sequence[str], *, style: str | None = None
    ) -> list[CaptionResult]:
        """``result`` (``caption``'s, or a result record read back) in each of ``locales``: the refine and moderate
        stages over its structured parts (subject, facts, image text quoted as written, draft, faces)."""
        from caption_agent.localize import localize

        return localize(self, result, locales, style=style)

    def sharing(self, **given: Any) -> CaptionAgent:
        """An agent with this one's config and already built components (loaded models, the catalog, the policy),
        with ``given`` ones in their place (e.g. ``refiner=`` another chain). It runs on the shared models and never
        closes them; this agent stays as it was (nothing is swapped in place)."""
        shared = {name: part for name in NAMES if (part := self.built(name)) is not None}
        other = CaptionAgent(self.config, **{**shared, **given})
        if self.built("drafters") is not None:  # the drafter router and the drafters it loaded
            other.__dict__["drafters"] = other._given["drafters"] = self.drafters
        return other

    def as_runnable(self) -> Any:
        """The agent as a LangChain Runnable (invoke / batch / ainvoke / callbacks)."""
        from caption_agent.runnable import CaptionRunnable

        return CaptionRunnable(agent=self)


def caption(image: ImageLike, **kwargs: Any) -> CaptionResult:
    """One-shot helper: caption ``image`` with a default CaptionAgent (models load on each call; prefer the class)."""
    agent = CaptionAgent()
    try:
        return agent.caption(image, **kwargs)
    finally:
        agent.close()
