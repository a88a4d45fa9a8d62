"""Catalog claims: a product named by its sku must be what the photo shows.

A sku the caller gives is trusted to exist (an unknown one is refused as bad input), not to match the photo: a cat
photo sent with a tripod's sku would otherwise be published as the tripod's copy. When the draft names a
category (the lite drafter's hedged WordNet category, or a vocabulary name in a VLM's text) that shares no
basic-level category with the product's catalog category (``retrieval/relevance.contradiction``), the result is
held with a reason naming both. Photos of people are not judged (people hold and wear products), nor are drafts
that name no category (colours only: nothing to contradict).

Products found by similarity never reach this rule with a name: the retriever gives them only their category
(``retrieval.retriever.similar_facts``), so a caption cannot name them in any style.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from caption_agent.drafters.hedging import synsets_in_text
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.retrieval.relevance import contradiction

CODE = "catalog.contradiction"
MESSAGE = "The photo does not show the product that the request's sku names."
FIX = "Check the sku for this photo (or the photo for this sku), then caption it again or write the copy yourself."


class CatalogConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "review", "block"] = Field(
        "review", description="For a photo that contradicts its sku's category: review holds it (the default)."
    )
    on_exhausted: Literal["review", "block"] = "review"
    on_draft: Literal["allow", "review", "block"] = "review"


class CatalogRule(Rule):
    name = "catalog"
    config_model = CatalogConfig
    order = 150
    stages = frozenset({"output"})
    config: CatalogConfig

    def check_output(self, text: str, ctx) -> RuleResult:
        if ctx.faces:
            return self.allow(text, "people in the photo: a named product is not checked against the photo")
        named = {f.sku: f.fields.get("category") for f in ctx.facts if f.field == "title"}
        if not named:
            return self.allow(text, "no product named by sku")
        photo = synsets_in_text(ctx.draft)
        for sku, category in named.items():
            why = contradiction(photo, category)
            if why is not None:
                return self.violation(
                    text,
                    None,
                    f"sku {sku}: {why}",
                    ctx,
                    wanted=self.config.action,
                    code=CODE,
                    message=MESSAGE,
                    fix=FIX,
                    sku=sku,
                    category=category,
                )
        return self.allow(text, f"the photo fits the category of {', '.join(sorted(named))}")
