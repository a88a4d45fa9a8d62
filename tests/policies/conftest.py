"""Fixtures for the policy tests: the real engine on the bundled default policy."""

from __future__ import annotations

import pytest

from caption_agent.schemas import CaptionResult, GroundingFact, ImageInfo


@pytest.fixture(scope="session")
def engine():
    from caption_agent.policies import PolicyEngine

    return PolicyEngine.load()


@pytest.fixture
def make_ctx():
    """ModerationContext factory with the alt_text preset and English defaults."""
    from caption_agent.policies import ModerationContext
    from caption_agent.prompts import load_preset

    def make(draft: str = "a white espresso cup on a saucer", preset: str = "alt_text", facts=(), **kw):
        facts = [f if isinstance(f, GroundingFact) else fact(f) for f in facts]
        kw.setdefault("locale", "en-US")
        kw.setdefault("attempts_left", 1)
        kw.setdefault("faces", 0)  # screened, no faces; None (not screened) is tested on its own
        return ModerationContext(preset=load_preset(preset), draft=draft, facts=facts, **kw)

    return make


def fact(text: str, sku: str = "SKU1", **fields: str) -> GroundingFact:
    return GroundingFact(id=f"{sku}:text", sku=sku, field="text", text=text, score=0.9, fields=fields)


def fired(outcome) -> dict[str, str]:
    """rule -> action for the rules that did not allow."""
    return {d.rule: d.action for d in outcome.decisions if d.action != "allow"}


@pytest.fixture
def queued():
    """A caption waiting in the review queue (what reviewers edit and `review import` publishes)."""
    return CaptionResult(
        key="k1",
        status="review",
        text="A white espresso cup.",
        style="alt_text",
        locale="en-US",
        image=ImageInfo(source="k1.jpg", sha256="ab" * 32, width=10, height=10),
        draft="a white espresso cup",
        confidence=0.3,
        decision="review",
    )
