"""The ground stage: catalog facts for each ranked draft, behind the relevance gate; unknown skus are refused."""

from __future__ import annotations

from typing import Any

from caption_agent.errors import UnknownSkuError
from caption_agent.state import CaptionState, StageTimer


class GroundStage:
    name = "ground"
    runs_ahead = False

    def __init__(self, parts: Any) -> None:
        self.parts = parts

    def run(self, states: list[CaptionState]) -> None:
        """Facts for every live item in one batched retrieval; if that fails, item by item to pin the error."""
        embedder = self.parts.built("embedder")
        for state in states:
            state.provenance.embedder = embedder.model_id if embedder is not None else ""
        retriever = self.parts.retriever
        if retriever is None:
            return
        check_skus(retriever, states)
        todo = [s for s in states if s.live and s.style.use_facts]
        if not todo:
            return
        with StageTimer(todo, "ground"):
            try:
                found = retriever.facts_many([(s.ranked[0].text, s.hint) for s in todo])
            except Exception:  # noqa: BLE001 - retried item by item below, to pin the error on its item
                found = None
        for state, facts in zip(todo, found or [None] * len(todo)):
            if facts is None:
                with StageTimer([state], "ground"):
                    try:
                        facts = retriever.facts(state.ranked[0].text, state.hint)
                    except Exception as exc:  # noqa: BLE001 - fails this item, never the batch
                        state.fail(exc, "ground")
                        continue
            if retriever.gate is not None:  # similarity-found products must be relevant
                facts, why = retriever.gated(facts, state.drafted.subject, state.ranked[0].text, state.hint)
                state.provenance.fallbacks.extend([why] if why else [])
            state.facts = facts


def check_skus(retriever: Any, states: list[CaptionState]) -> None:
    """A sku the catalog does not hold is bad input: the item fails with UnknownSkuError (API, CLI, service and
    jobs alike) instead of being captioned without its product. One store query for the batch."""
    skus = sorted({s.hint.sku for s in states if s.hint.sku})
    if not skus:
        return
    try:
        found = retriever.known_skus(skus)
        empty = not found and retriever.count() == 0  # an empty catalog is a setup mistake: say so
    except Exception as exc:  # noqa: BLE001 - the store is down: these items fail, the batch goes on
        for state in states:
            if state.hint.sku:
                state.fail(exc, "ground")
        return
    where = retriever.location
    why = f"; the catalog at {where} holds no products: ingest your product file into it first" if empty else ""
    for state in states:
        sku = state.hint.sku
        if sku and sku not in found:
            state.fail(UnknownSkuError(f"sku {sku!r} is not in the catalog{why}."), "input")
