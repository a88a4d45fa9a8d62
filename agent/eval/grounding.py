"""Grounding precision and recall of the attributes a caption states, against the product's catalog facts.

Claims are found by the policy's grounding rule (colours, materials, names, numbers, sizes, with its lexicon).
* precision = claims in the caption that the product's catalog facts support / all claims in the caption;
* recall    = the product's catalog attributes (its ``attributes`` values and its brand, as the same kinds of
  concepts) that the caption states / all such attributes. A caption concept counts for a catalog one when it
  is the same concept or one the lexicon calls broader ("blue" for "navy"); numbers compare by value.
Micro-averaged over captions. The product of an image is the references' ``sku`` for it; without one, the
record's highest-scored fact's product. Only facts of that one product count (not the draft, not other products).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caption_agent.eval.data import EvalInputError, EvalItem, References


@dataclass
class GroundingCounts:
    claims: int = 0
    supported: int = 0
    attributes: int = 0
    mentioned: int = 0
    captions: int = 0
    skipped: int = 0  # captions with no known product
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [claims, supported]
    unsupported: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.supported / self.claims, 4) if self.claims else None,
            "recall": round(self.mentioned / self.attributes, 4) if self.attributes else None,
            "claims": self.claims,
            "supported": self.supported,
            "attributes": self.attributes,
            "mentioned": self.mentioned,
            "captions": self.captions,
            "skipped_no_product": self.skipped,
            "by_kind": {k: {"claims": v[0], "supported": v[1]} for k, v in sorted(self.by_kind.items())},
            "unsupported_examples": self.unsupported[:10],
        }


def load_catalog_facts(path: Path | str) -> dict[str, list[Any]]:
    """sku -> GroundingFacts of every valid product in a catalog file (JSONL, CSV or Parquet)."""
    from caption_agent.retrieval.catalog import read_catalog
    from caption_agent.retrieval.product import Product
    from caption_agent.retrieval.retriever import product_facts

    out: dict[str, list[Any]] = {}
    for _, row in read_catalog(path):
        if isinstance(row, Product):
            out[row.sku] = product_facts(row, 1.0)
    if not out:
        raise EvalInputError(
            f"catalog {str(path)!r} has no valid product.",
            fix="check it with `caption-agent ingest FILE --catalog DIR`, which reports each rejected row.",
        )
    return out


def grounding(
    items: list[EvalItem], refs: References, engine: Any, catalog: dict[str, list[Any]] | None = None
) -> dict[str, Any]:
    """Micro-averaged grounding precision/recall over the captions that have a product."""
    from caption_agent.policies import ModerationContext
    from caption_agent.prompts import load_preset
    from caption_agent.schemas import GroundingFact
    from caption_agent.text import fold

    counts = GroundingCounts()
    for item in items:
        if not item.text:
            continue
        counts.captions += 1
        record_facts = [GroundingFact.model_validate(f) for f in item.record.get("facts", [])]
        ref = refs.images.get(item.image_id) if item.image_id else None
        sku = ref.sku if ref and ref.sku else max(record_facts, key=lambda f: f.score).sku if record_facts else None
        facts = catalog.get(sku) if catalog is not None and sku else [f for f in record_facts if f.sku == sku]
        if not sku or not facts:
            counts.skipped += 1
            continue
        preset = load_preset(item.style or "alt_text")
        rule = next(r for r in engine.rules(preset.name) if r.name == "grounding")
        ctx = ModerationContext(preset=preset, locale=item.locale, draft="", facts=facts)
        index = rule.index(ctx)
        claims = rule.claims(item.text, item.locale)
        for claim in claims:
            ok = bool(rule.support(claim, ctx, index))
            row = counts.by_kind.setdefault(claim.kind, [0, 0])
            row[0] += 1
            row[1] += ok
            counts.claims += 1
            counts.supported += ok
            if not ok:
                counts.unsupported.append({"image_id": str(item.image_id), "claim": claim.text, "kind": claim.kind})
        stated = _stated(claims, rule)
        folded = fold(item.text)
        for kind, concept in _catalog_concepts(facts, rule, item.locale):
            counts.attributes += 1
            if kind == "name":
                counts.mentioned += re.search(r"(?<!\w)" + re.escape(concept) + r"(?!\w)", folded) is not None
            elif kind == "number":
                counts.mentioned += bool(rule.number_values(concept) & stated.get("number", set()))
            else:
                wanted = {concept, *rule.config.broader.get(concept, [])}
                counts.mentioned += bool(wanted & stated.get(kind, set()))
    return counts.to_dict()


def _stated(claims: list[Any], rule: Any) -> dict[str, set]:
    out: dict[str, set] = {}
    for c in claims:
        if c.kind == "number":
            out.setdefault("number", set()).update(rule.number_values(c.concept))
        else:
            out.setdefault(c.kind, set()).add(c.concept)
    return out


def _catalog_concepts(facts: list[Any], rule: Any, locale: str) -> list[tuple[str, str]]:
    """(kind, concept) of the product's attribute values and brand, each once."""
    from caption_agent.text import fold

    fields = facts[0].fields
    found: dict[tuple[str, str], None] = {}
    for key, value in fields.items():
        if key.startswith("attributes."):
            for c in rule.claims(str(value), locale, names=False):
                found[(c.kind, c.concept)] = None
    if fields.get("brand") and "name" in rule.config.kinds:
        found[("name", fold(fields["brand"]))] = None
    return list(found)
