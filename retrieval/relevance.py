"""The relevance gate: a product found by similarity alone is used only when it is what the image shows.

Grounded is not the same as right: similarity search always returns *something*, and a refiner that copies an
unrelated product's text ("A light moped for city commuting." under a tripod photo) passes every grounding
check because a fact supports it. So a product found by similarity must clear two tests:

1. its catalog category maps (``data/category_synsets.tsv``, longest " > " prefix) to a WordNet synset that is
   the draft's hedged category or one of its ancestors (``DraftSubject.synsets``; for a drafter without a
   structured subject, the vocabulary names its text contains);
2. its similarity score clears ``min_score``, calibrated on a labelled set of image-product pairs
   (``benchmarks/bench_relevance.py``).

A sku the caller names is never gated, but it is checked: ``contradiction`` says when the photo's named category
and the product's category share no basic-level category (a cat photo for a tripod's sku), and the catalog rule
holds such a result with a reason naming both. What the gate drops is said in one diagnostic line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable, Sequence

from caption_agent.drafters.hedging import PERSON, Hierarchy, hierarchy, synsets_in_text
from caption_agent.schemas import DraftSubject, GroundingFact

__all__ = ["RelevanceGate", "Verdict", "category_synsets", "contradiction", "load_category_table"]


def load_category_table(text: str) -> dict[tuple[str, ...], frozenset[str]]:
    """Parse ``prefix<TAB>wnid,wnid<TAB>note`` rows into path-tuple -> synsets."""
    table: dict[tuple[str, ...], frozenset[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            prefix, wnids = (line.split("\t") + [""])[:2]
            table[_path(prefix)] = frozenset(w for w in wnids.split(",") if w.strip())
    return table


@lru_cache(maxsize=1)
def _bundled() -> dict[tuple[str, ...], frozenset[str]]:
    text = (resources.files("caption_agent.retrieval") / "data" / "category_synsets.tsv").read_text(encoding="utf-8")
    return load_category_table(text)


def _words(category: str | None) -> str:
    return " ".join(_path(category or ""))


def _path(category: str) -> tuple[str, ...]:
    return tuple(step.strip().lower() for step in category.split(">") if step.strip())


CategoryTable = dict[tuple[str, ...], frozenset[str]]


def category_synsets(category: str | None, table: CategoryTable | None = None) -> frozenset[str]:
    """WordNet synsets of a catalog category by its longest mapped prefix; empty when no row covers it."""
    table = _bundled() if table is None else table
    path = _path(category or "")
    for end in range(len(path), 0, -1):
        if path[:end] in table:
            return table[path[:end]]
    return frozenset()


def _most_specific(synsets: Iterable[str], tree: Hierarchy) -> str | None:
    """The named (basic-level) synset with the most ancestors: what a draft's subject is."""
    named = [w for w in synsets if w in tree.phrases]
    return max(named, key=lambda w: (len(tree.ancestors(w)), w)) if named else None


def contradiction(
    photo_synsets: Iterable[str],
    category: str | None,
    table: CategoryTable | None = None,
    tree: Hierarchy | None = None,
) -> str | None:
    """Why a photo whose draft names ``photo_synsets`` (with their ancestors) cannot show a product of
    ``category``, or None when it can or when either side is unknown.

    A contradiction is confident: the photo's named category and the product's share no basic-level category
    at all (cat and tripod meet only at "whole"/"object"), and the photo is not of people (people hold and wear
    products). A photo whose draft names a broader category of the product ("a vehicle" for a motorcycle's sku)
    or a narrower one, or a category whose path names the photo's category ("Pets > Cats > Beds" for a cat), is
    no contradiction."""
    tree = tree or hierarchy()
    photo = frozenset(photo_synsets)
    if not photo or PERSON in photo:
        return None
    mapped = [w for w in category_synsets(category, table) if w in tree.parents or w in tree.phrases]
    if not mapped:
        return None
    # The path's own words count too: a cat bed ("Pets > Cats > Beds") is for the cat the photo shows.
    product = frozenset().union(*(tree.ancestors(w) for w in mapped), synsets_in_text(_words(category), tree))
    photo_closure = frozenset().union(*(tree.ancestors(w) for w in photo))
    if any(w in tree.phrases for w in photo_closure & product):
        return None
    shown = _most_specific(photo, tree)
    said = _most_specific(product, tree) or mapped[0]
    shows = tree.phrases.get(shown, "") if shown else ", ".join(sorted(tree.lemmas.get(w, w) for w in photo)[:3])
    is_a = tree.phrases.get(said) or tree.lemmas.get(said, said)
    return f"the photo shows {shows}; the product is {is_a} ({category})"


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one product."""

    sku: str
    keep: bool
    reason: str


class RelevanceGate:
    """Keeps a similarity-found product only if its category is the draft's category (or above it) and its
    score clears ``min_score``."""

    def __init__(self, min_score: float = 0.21, table: dict[tuple[str, ...], frozenset[str]] | None = None) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError("min_score must be within [0, 1]")
        self.min_score = min_score
        self.table = table

    def accepted(self, subject: DraftSubject | None, draft_text: str = "") -> frozenset[str]:
        """Synsets a product may map to: the subject's, else those the draft text names."""
        if subject is not None and (subject.synsets or subject.name):
            return frozenset(subject.synsets)
        return frozenset(synsets_in_text(draft_text))

    def judge(self, sku: str, category: str | None, score: float, accepted: frozenset[str]) -> Verdict:
        mapped = category_synsets(category, self.table)
        if not accepted:
            return Verdict(sku, False, "the draft names no category")
        if not mapped:
            return Verdict(sku, False, f"category {category!r} maps to no WordNet synset")
        if not mapped & accepted:
            return Verdict(sku, False, f"category {category!r} is not the draft's category or above it")
        if score < self.min_score:
            return Verdict(sku, False, f"score {score:.2f} < {self.min_score:.2f}")
        return Verdict(sku, True, "relevant")

    def filter(
        self, facts: Sequence[GroundingFact], subject: DraftSubject | None, draft_text: str = ""
    ) -> tuple[list[GroundingFact], str | None]:
        """The facts of products that pass, and a diagnostic line when any product was dropped (None if none)."""
        accepted = self.accepted(subject, draft_text)
        verdicts = {
            sku: self.judge(sku, fact.fields.get("category"), fact.score, accepted)
            for sku, fact in _first_per_sku(facts)
        }
        kept = [f for f in facts if verdicts[f.sku].keep]
        dropped = [v for v in verdicts.values() if not v.keep]
        if not dropped:
            return kept, None
        why = "; ".join(f"{v.sku}: {v.reason}" for v in dropped)
        tail = "captioned without facts" if not kept else f"kept {len({f.sku for f in kept})}"
        return kept, f"ground: relevance gate dropped {len(dropped)} of {len(verdicts)} products ({why}); {tail}"


def _first_per_sku(facts: Iterable[GroundingFact]) -> list[tuple[str, GroundingFact]]:
    seen: dict[str, GroundingFact] = {}
    for fact in facts:
        seen.setdefault(fact.sku, fact)
    return list(seen.items())
