"""CaptionAgent: draft -> rank -> ground -> refine -> moderate, for one image or a batch.

Each stage is a plain object with one method; the agent loads them lazily, once, and runs a batch stage by stage
so that batched backends (drafter forward passes, concurrent vLLM requests) stay busy. A failing item becomes an
error record; the rest of the batch goes on.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from caption_agent import __version__, refine_loop
from caption_agent.config import AgentConfig
from caption_agent.errors import CaptionAgentError, ModelOutputError, UnknownSkuError
from caption_agent.images import load_image
from caption_agent.locales import language_code, normalize_locale
from caption_agent.prompts import load_preset, prompt_hash
from caption_agent.ranking import ConsensusRanker, Ranker
from caption_agent.refine_loop import Refinement
from caption_agent.refiners import REFINERS, RefineJob, build_chain
from caption_agent.schemas import CaptionRequest, CaptionResult, Draft, ModerationOutcome, ProductHint
from caption_agent.work import StageTimer, WorkItem

ImageLike = Path | str | bytes


class CaptionAgent:
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
        self.config = config or AgentConfig.load()
        from caption_agent.drafters import DRAFTERS

        # A misspelt backend is a ConfigError now, not a traceback at the first image.
        DRAFTERS.check(self.config.drafter.backend)
        REFINERS.check(self.config.refiner.backend, "none")
        for name in self.config.refiner.fallbacks:
            REFINERS.check(name, "draft")
        given = {
            "drafter": drafter,
            "ranker": ranker,
            "retriever": retriever,
            "refiner": refiner,
            "policy": policy,
            "embedder": embedder,
        }
        self._given = {name: stage for name, stage in given.items() if stage is not None}
        self.__dict__.update(self._given)  # what cached_property would have built

    # --- stages, loaded lazily -------------------------------------------------------------------------------
    @cached_property
    def drafters(self):
        """Drafters by name (config default + per-request choices), with the lite fallback the config allows."""
        from caption_agent.drafters.routing import DrafterRouter

        return DrafterRouter(self.config.drafter)

    @cached_property
    def drafter(self):
        return self.drafters.get()[0]

    @cached_property
    def embedder(self):
        from caption_agent.embedders import get_embedder

        return get_embedder(self.config.retrieval.embedder, runtime=self.config.retrieval.embedder_runtime)

    @cached_property
    def ranker(self) -> Ranker:
        if self.config.ranker.clip_model:
            from caption_agent.ranking_clip import ClipRanker

            return ClipRanker(self.config.ranker.clip_model, drafter_weight=self.config.ranker.drafter_weight)
        return ConsensusRanker(self.embedder, drafter_weight=self.config.ranker.drafter_weight)

    @cached_property
    def retriever(self):
        settings = self.config.retrieval
        if settings.catalog_dir is None and settings.chroma_url is None:
            return None
        from caption_agent.retrieval import CatalogStore, Retriever
        from caption_agent.retrieval.relevance import RelevanceGate

        store = CatalogStore.open(settings, self.embedder)
        gate = RelevanceGate(settings.gate_min_score) if settings.relevance_gate else None
        return Retriever(store, top_k=settings.top_k, min_score=settings.min_score, gate=gate)

    @cached_property
    def refiner(self):
        """The refiner chain: the primary backend, its fallbacks, then the draft (``refiner.fallbacks``)."""
        return build_chain(self.config.refiner)

    @cached_property
    def policy(self):
        from caption_agent.policies import PolicyEngine

        return PolicyEngine.load(self.config.policy.file)

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
        item = WorkItem(request)
        self._run([item])
        result = item.done
        if result.status == "error" and result.error is not None and result.error.stage == "input":
            raise item.exc or CaptionAgentError(result.error.message)
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
        work = [
            WorkItem(self.with_defaults(i) if isinstance(i, CaptionRequest) else self.make_request(i)) for i in items
        ]
        self._run(work)
        return [w.result for w in work]  # type: ignore[misc]

    def with_defaults(self, request: CaptionRequest) -> CaptionRequest:
        """``request`` with the config's default style and locale where the caller set none."""
        unset = {"style": self.config.default_style, "locale": self.config.default_locale}
        update = {k: v for k, v in unset.items() if k not in request.model_fields_set}
        return request.model_copy(update=update) if update else request

    def _run(self, work: list[WorkItem]) -> None:
        for stage in (self._prepare, self._draft, self._rank, self._ground, self._refine_and_moderate):
            live = [w for w in work if w.live]
            if live:
                stage(live)
        if self.config.policy.review_queue is not None:
            self._queue_for_review([w.result for w in work if w.result is not None])

    def _queue_for_review(self, results: list[CaptionResult]) -> None:
        from caption_agent.policies.review import ReviewQueue, needs_review

        assert self.config.policy.review_queue is not None
        queue = ReviewQueue(self.config.policy.review_queue)
        for result in results:
            if needs_review(result):
                queue.add(result)

    def as_runnable(self):
        """The agent as a LangChain Runnable (invoke / batch / ainvoke / callbacks)."""
        from caption_agent.runnable import CaptionRunnable

        return CaptionRunnable(agent=self)

    def close(self) -> None:
        """Release the stages this agent built (models, connections, the catalog's lock); given ones stay open."""
        router = self.__dict__.pop("drafters", None)
        if router is not None:
            router.close()
        owned = {
            name: self.__dict__.pop(name, None)
            for name in ("drafter", "refiner", "retriever")
            if name not in self._given
        }
        for name in ("drafter", "refiner"):
            if owned.get(name) is not None:
                owned[name].close()
        if owned.get("retriever") is not None:
            owned["retriever"].store.close()

    # --- stages over a batch ------------------------------------------------------------------------------------
    def _stamp(self, item: WorkItem) -> None:
        """Provenance known before any model runs, so results that end early (bad input, blocked at screening)
        carry it too: package, policy and prompt versions."""
        item.provenance.package_version = __version__
        item.provenance.policy_version = self.policy.version
        item.provenance.policy_hash = self.policy.hash
        if item.preset is not None:
            item.provenance.prompt_version = f"{item.preset.name}@{item.preset.version}"
            item.provenance.prompt_hash = prompt_hash(item.preset)

    def _prepare(self, items: list[WorkItem]) -> None:
        for item in items:
            with StageTimer([item], "load"):
                try:
                    item.preset = preset = load_preset(item.request.style, self.config.prompts_dir)
                    self._stamp(item)
                    item.locale = normalize_locale(item.request.locale)
                    item.image, info = load_image(item.request.image, self.config.images)
                    item.draft = Draft(image=info, candidates=[])
                except CaptionAgentError as exc:
                    self._stamp(item)
                    item.fail(exc, "input")
                    continue
            with StageTimer([item], "screen"):
                screened = refine_loop.guard_policy(
                    item,
                    "screen",
                    lambda: self.policy.screen_image(item.image, info, preset.name),
                    lambda outcome: self._finish(item, outcome, text=None),
                )
            if screened is not None:
                outcome, item.faces = screened
                # One person signal: the drafter and the result see the screen's count (no crops, no embeddings).
                item.draft = Draft(image=info.model_copy(update={"faces": item.faces}), candidates=[])
                item.decisions += outcome.decisions
                if outcome.action in ("block", "review"):
                    self._finish(item, outcome, text=None)

    def _draft(self, items: list[WorkItem]) -> None:
        groups: dict[tuple[str, str], list[WorkItem]] = {}
        for w in items:  # one batch per drafter (the config's, or the one a request names) and style (its prompt)
            groups.setdefault((w.request.drafter or self.config.drafter.backend, w.request.style), []).append(w)
        for (name, style), group in groups.items():
            self._draft_group(name, group, style)

    def _draft_group(self, name: str, items: list[WorkItem], style: str) -> None:
        n = max(w.request.n_candidates or self.config.drafter.n_candidates for w in items)
        with StageTimer(items, "draft"):
            try:
                if name == self.config.drafter.backend:
                    self.drafters.adopt(name, self.drafter)  # a drafter set on the agent (shared models) wins
                drafts, drafter, notes = self.drafters.draft(
                    name, [w.image for w in items], [w.drafted.image for w in items], n, style
                )
            except Exception as exc:  # noqa: BLE001 - a backend crash fails this batch's items, not the process
                for w in items:
                    w.fail(exc, "draft")
                return
        for item, draft in zip(items, drafts):
            item.draft = draft.model_copy(
                update={"candidates": draft.candidates[: item.request.n_candidates or self.config.drafter.n_candidates]}
            )
            item.image_text = draft.image_text
            item.provenance.drafter = drafter.name
            item.provenance.drafter_model = draft.model_id or drafter.model_id
            item.provenance.fallbacks.extend(notes)
            if not item.draft.candidates:
                item.fail(ModelOutputError("the drafter produced no candidates for this image."), "draft")

    def _rank(self, items: list[WorkItem]) -> None:
        for item in items:
            with StageTimer([item], "rank"):
                try:
                    item.ranked, item.confidence = self.ranker.rank(item.drafted.candidates, item.image)
                    item.provenance.ranker = f"{self.ranker.name}:{self.ranker.model_id}"
                except Exception as exc:  # noqa: BLE001 - fails this item, never the batch
                    item.fail(exc, "rank")

    def _ground(self, items: list[WorkItem]) -> None:
        """Facts for every live item in one batched retrieval; if that fails, item by item to pin the error."""
        for item in items:
            item.provenance.embedder = getattr(self.embedder, "model_id", "") if "embedder" in self.__dict__ else ""
        if self.retriever is None:
            return
        self._check_skus(items)
        todo = [i for i in items if i.live and i.style.use_facts]
        if not todo:
            return
        with StageTimer(todo, "ground"):
            try:
                found = self.retriever.facts_many([(i.ranked[0].text, i.request.hint) for i in todo])
            except Exception:  # noqa: BLE001 - retried item by item below, to pin the error on its item
                found = None
        for item, facts in zip(todo, found or [None] * len(todo)):
            if facts is None:
                with StageTimer([item], "ground"):
                    try:
                        facts = self.retriever.facts(item.ranked[0].text, item.request.hint)
                    except Exception as exc:  # noqa: BLE001 - fails this item, never the batch
                        item.fail(exc, "ground")
                        continue
            if getattr(self.retriever, "gate", None) is not None:  # similarity-found products must be relevant
                facts, why = self.retriever.gated(facts, item.drafted.subject, item.ranked[0].text, item.request.hint)
                item.provenance.fallbacks.extend([why] if why else [])
            item.facts = facts

    def _check_skus(self, items: list[WorkItem]) -> None:
        """A sku the catalog does not hold is bad input: the item fails with UnknownSkuError (API, CLI, service
        and jobs alike) instead of being captioned without its product. One store query for the batch."""
        skus = sorted({i.request.hint.sku for i in items if i.request.hint.sku})
        if not skus:
            return
        try:
            found = self.retriever.store.content_hashes(skus)
            empty = not found and self.retriever.store.count() == 0  # an empty catalog is a setup mistake: say so
        except Exception as exc:  # noqa: BLE001 - the store is down: these items fail, the batch goes on
            for item in items:
                if item.request.hint.sku:
                    item.fail(exc, "ground")
            return
        where = getattr(self.retriever.store, "location", "")
        why = f"; the catalog at {where} holds no products: ingest your product file into it first" if empty else ""
        for item in items:
            sku = item.request.hint.sku
            if sku and sku not in found:
                item.fail(UnknownSkuError(f"sku {sku!r} is not in the catalog{why}."), "input")

    def _refine_and_moderate(self, items: list[WorkItem]) -> None:
        """The shared refine -> moderate -> regenerate -> fallback loop (``refine_loop``) over the batch."""
        from caption_agent.policies import ModerationContext

        work = []
        for item in items:
            job = RefineJob(
                preset=item.style,
                draft=item.ranked[0].text,
                locale=item.locale,
                facts=item.facts,
                max_chars=item.request.max_chars,
                image_text=item.image_text,
                subject=item.drafted.subject,
                old_caption=item.request.old_caption or "",
            )
            ctx = ModerationContext(
                preset=item.style,
                locale=item.locale,
                draft=job.draft,
                max_chars=item.request.max_chars,
                faces=item.faces,
                confidence=item.confidence,
                subject=item.drafted.subject,
                sku=item.request.hint.sku,
            )
            # The drafters write English: a draft stands in only for a caption in English, never labelled de-DE.
            english = language_code(item.locale) == "en"
            work.append(
                Refinement(job=job, ctx=ctx, provenance=item.provenance, decisions=item.decisions, fallback_ok=english)
            )
        refine_loop.run(self.refiner, self.policy, work, self.config.policy.max_regenerations)
        for item, done in zip(items, work):
            item.facts, item.image_text, item.facts_used = list(done.job.facts), done.job.image_text, done.facts_used
            if done.error is not None:
                item.fail(done.error, done.error_stage)
            else:
                assert done.outcome is not None  # the loop settles every item: an error or an outcome
                self._finish(item, done.outcome, done.text)

    def _finish(self, item: WorkItem, outcome: ModerationOutcome, text: str | None) -> None:
        if outcome.decisions and outcome.decisions is not item.decisions:
            item.decisions += [d for d in outcome.decisions if d not in item.decisions]
        from caption_agent.policies.reasons import hold_reasons

        status = {"block": "blocked", "review": "review"}.get(outcome.action, "ok")
        item.result = CaptionResult(
            key=item.request.key,
            status=status,
            text=text if status != "blocked" else None,
            style=item.style.name,
            locale=item.locale,
            image=item.draft.image if item.draft else None,
            draft=item.ranked[0].text if item.ranked else None,
            candidates=item.ranked,
            confidence=round(item.confidence, 4) if item.ranked else None,
            facts=item.facts,
            facts_used=item.facts_used,
            decision=outcome.action,
            decisions=item.decisions,
            reasons=hold_reasons(item.decisions, outcome.action),
            provenance=item.provenance,
            subject=item.draft.subject if item.draft is not None else None,
            image_text=item.image_text,
            hint=item.hint,
        )


def caption(image: ImageLike, **kwargs: Any) -> CaptionResult:
    """One-shot helper: caption ``image`` with a default CaptionAgent (models load on each call; prefer the class)."""
    agent = CaptionAgent()
    try:
        return agent.caption(image, **kwargs)
    finally:
        agent.close()
