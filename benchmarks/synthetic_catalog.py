"""Deterministic synthetic products for the retrieval benchmarks (realistic field shapes, no real data)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator

from caption_agent.retrieval.product import Product

_NOUNS = [
    "espresso cup",
    "latte mug",
    "teapot",
    "cat bed",
    "dog leash",
    "scratching post",
    "glass vase",
    "table lamp",
    "knit throw",
    "camera tripod",
    "camera strap",
    "hiking backpack",
    "tent",
    "lantern",
    "rain jacket",
    "wool scarf",
    "sneakers",
    "motorcycle helmet",
    "riding gloves",
    "rocket model kit",
    "astronaut figure",
    "travel poster",
    "coffee grinder",
    "gooseneck kettle",
    "saucer set",
]
_COLORS = [
    "matte black",
    "cream white",
    "sea blue",
    "charcoal",
    "grey",
    "olive green",
    "mustard yellow",
    "navy",
    "gloss red",
    "natural oak",
    "tan",
    "off-white",
    "slate grey",
    "orange",
    "clear",
]
_MATERIALS = [
    "stoneware",
    "porcelain",
    "cast iron",
    "felt",
    "nylon",
    "glass",
    "oak",
    "cotton",
    "aluminium",
    "leather",
    "recycled polyester",
    "merino wool",
    "canvas",
    "fibreglass",
    "resin",
]
_ADJ = ["compact", "handmade", "lightweight", "classic", "modern", "rugged", "minimal", "vintage-style"]
_USES = ["for everyday use", "for small spaces", "for travel", "as a gift", "for the weekend", "for beginners"]


def synthetic_products(n: int, seed: int = 0, brands: int = 50, categories: int = 20) -> Iterator[Product]:
    """``n`` products with ~25-40 word texts, ``brands`` brands and ``categories`` categories."""
    rng = random.Random(seed)
    for i in range(n):
        noun, color, material = rng.choice(_NOUNS), rng.choice(_COLORS), rng.choice(_MATERIALS)
        brand = f"Brand{rng.randrange(brands):03d}"
        yield Product(
            sku=f"SYN-{i:08d}",
            title=f"{brand} {rng.choice(_ADJ).title()} {noun.title()}",
            brand=brand,
            category=f"Category{rng.randrange(categories):02d}",
            attributes={"color": color, "material": material, "size": f"{rng.randrange(5, 200)} cm"},
            description=f"A {rng.choice(_ADJ)} {noun} in {color} {material}, {rng.choice(_USES)}. "
            f"Made by {brand}; model {rng.randrange(10**6):06d}, {rng.choice(_USES)}.",
        )


def write_jsonl(products: Iterator[Product], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for p in products:
            fh.write(json.dumps(p.model_dump(), ensure_ascii=False) + "\n")
    return path


def draft_queries(n: int, seed: int = 1) -> list[str]:
    """Draft-caption-like queries."""
    rng = random.Random(seed)
    return [f"a {rng.choice(_COLORS)} {rng.choice(_NOUNS)} on a wooden table" for _ in range(n)]
