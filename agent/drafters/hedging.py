"""Hedged naming: sum classifier probabilities up WordNet and name the most specific basic-level category.

A leaf classifier says "Egyptian cat 0.37, tabby 0.30, tiger cat 0.27"; the sum under "cat" is 0.94. Following
Deng et al., "Hedging your bets" (CVPR 2012), the draft names the most specific node that holds enough mass, but
only nodes of a curated basic-level vocabulary (``data/basic_level.tsv``) are names: abstract ancestors
("artifact", "instrumentality", "organism") never are. Both tables are data files committed with the package;
``scripts/gen_wordnet_table.py`` generated the hierarchy from WordNet 3.0 once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["Hierarchy", "Hedge", "Named", "hierarchy", "hedge", "synsets_in_text", "PERSON"]

PERSON = "n00007846"  # person, individual: the subject whenever people are seen
_CLOTHING = "n03051540"  # clothing: garments are worn ("in a jersey"), other objects are "with" the person


@dataclass(frozen=True)
class Named:
    """One basic-level category and the probability mass under it."""

    synset: str
    phrase: str  # with its article: "a cat", "coffee"
    mass: float
    garment: bool = False


@dataclass(frozen=True)
class Hedge:
    """What the classifier's distribution supports: the hedged subject, alternatives and context objects."""

    subject: Named | None  # most specific named category with mass >= threshold; None when nothing is
    alternatives: list[Named] = field(default_factory=list)  # other named categories, most mass first
    general: list[Named] = field(default_factory=list)  # named ancestors of the subject (less informative)


class Hierarchy:
    """The WordNet noun DAG above the 1,000 classes, with the basic-level vocabulary on it."""

    def __init__(self, table: str, vocabulary: str) -> None:
        self.lemmas: dict[str, str] = {}
        self.parents: dict[str, tuple[str, ...]] = {}
        classes: dict[int, str] = {}
        for line in table.splitlines():
            if not line or line.startswith("#"):
                continue
            wnid, index, lemmas, parents = line.split("\t")
            self.lemmas[wnid] = lemmas.split(",")[0]
            self.parents[wnid] = tuple(p for p in parents.split(",") if p)
            if int(index) >= 0:
                classes[int(index)] = wnid
        self.classes = tuple(classes[i] for i in range(len(classes)))
        self.phrases: dict[str, str] = {}
        for line in vocabulary.splitlines():
            if line and not line.startswith("#"):
                wnid, phrase = line.split("\t")[:2]
                if wnid not in self.lemmas:
                    raise ValueError(f"basic-level vocabulary names {wnid} ({phrase}), not in the hierarchy table")
                self.phrases[wnid] = phrase
        leaves: dict[str, list[int]] = {wnid: [] for wnid in self.phrases}
        for i, wnid in enumerate(self.classes):
            for node in self.ancestors(wnid):
                if node in leaves:
                    leaves[node].append(i)
        self.leaves = {wnid: np.asarray(idx, dtype=np.int64) for wnid, idx in leaves.items() if idx}

    @lru_cache(maxsize=4096)  # noqa: B019 - one shared instance lives for the process
    def ancestors(self, wnid: str) -> frozenset[str]:
        """``wnid`` and every hypernym above it (all paths)."""
        out = {wnid}
        for parent in self.parents.get(wnid, ()):
            out |= self.ancestors(parent)
        return frozenset(out)

    def lineage(self, wnid: str) -> list[str]:
        """``ancestors`` as a sorted list (what a draft records for the relevance gate)."""
        return sorted(self.ancestors(wnid))

    def is_garment(self, wnid: str) -> bool:
        return _CLOTHING in self.ancestors(wnid)

    def required(self, wnid: str, threshold: float, breadth: float) -> float:
        """The mass ``hedge`` needs under ``wnid`` to name it: ``threshold + breadth * log(k) / log(K)``."""
        k = len(self.leaves[wnid]) if wnid in self.leaves else 1
        return float(threshold + breadth * np.log(k) / np.log(max(len(self.classes), 2)))

    def masses(self, probs: np.ndarray) -> dict[str, float]:
        """Probability mass under every named category (a leaf reached by two paths counts once)."""
        return {wnid: float(probs[idx].sum()) for wnid, idx in self.leaves.items()}


@lru_cache(maxsize=1)
def hierarchy() -> Hierarchy:
    """The bundled hierarchy and basic-level vocabulary, loaded once."""
    data = resources.files("caption_agent") / "drafters" / "data"
    return Hierarchy(
        (data / "wordnet_imagenet.tsv").read_text(encoding="utf-8"),
        (data / "basic_level.tsv").read_text(encoding="utf-8"),
    )


def hedge(
    probs: np.ndarray, threshold: float = 0.5, breadth: float = 0.4, floor: float = 0.05, tree: Hierarchy | None = None
) -> Hedge:
    """Name the most specific basic-level category that holds enough of the mass.

    A category covering ``k`` of the ``K`` classes needs ``threshold + breadth * log(k) / log(K)``: a broad
    category ("an animal", 398 classes) soaks up an unsure classifier's scattered mass, which is doubt, not
    evidence, so it must hold more of it (0.85 for "an animal", 0.61 for "a cat", 0.5 for a single class).
    Alternatives are named categories off the subject's chain with at least ``floor`` mass; when no category
    qualifies the subject is None and the alternatives are all a draft can offer.
    """
    tree = tree or hierarchy()
    mass = tree.masses(probs)
    named = sorted(
        (Named(w, tree.phrases[w], m, tree.is_garment(w)) for w, m in mass.items() if m >= floor),
        key=lambda n: (-n.mass, len(tree.leaves[n.synset])),
    )
    held = [n for n in named if n.mass >= tree.required(n.synset, threshold, breadth)]
    # Most specific = fewest classes below it; nested categories hold at least their children's mass.
    subject = min(held, key=lambda n: (len(tree.leaves[n.synset]), -n.mass)) if held else None
    if subject is None:
        return Hedge(None, _distinct(named, tree))
    chain = tree.ancestors(subject.synset)
    general = [n for n in named if n.synset in chain and n.synset != subject.synset]
    others = [n for n in named if n.synset not in chain and subject.synset not in tree.ancestors(n.synset)]
    return Hedge(subject, _distinct(others, tree), general)


def _distinct(named: list[Named], tree: Hierarchy) -> list[Named]:
    """Keep the most specific of nested categories whose masses are nearly equal ("a bike" over "a vehicle")."""
    out: list[Named] = []
    for n in sorted(named, key=lambda n: len(tree.leaves[n.synset])):
        if not any(n.synset in tree.ancestors(o.synset) and o.mass >= 0.8 * n.mass for o in out):
            out.append(n)
    return sorted(out, key=lambda n: -n.mass)


_PEOPLE_WORDS = ("person", "people", "man", "men", "woman", "women", "boy", "girl", "child", "children", "astronaut")


def synsets_in_text(text: str, tree: Hierarchy | None = None) -> list[str]:
    """The vocabulary categories a free-text draft names (whole words, singular or plural) with all their
    ancestors: the relevance gate's view of a draft from a drafter that gives no structured subject."""
    tree = tree or hierarchy()
    words = " " + " ".join(re.findall(r"[a-z]+(?:-[a-z]+)?", text.lower())) + " "
    found: set[str] = set()
    for wnid, phrase in tree.phrases.items():
        noun = phrase.split(" ", 1)[1] if phrase.split(" ", 1)[0] in ("a", "an") else phrase
        if f" {noun} " in words or f" {noun}s " in words or f" {noun}es " in words:
            found |= tree.ancestors(wnid)
    if any(f" {w} " in words for w in _PEOPLE_WORDS):
        found |= tree.ancestors(PERSON)
    return sorted(found)
