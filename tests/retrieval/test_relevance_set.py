"""The labelled relevance set stays consistent with its catalog, and the benchmark's scoring is right."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SET = ROOT / "examples" / "relevance"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_relevance", ROOT / "benchmarks" / "bench_relevance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labels_name_real_photos_and_catalog_categories():
    photos = json.loads((SET / "labels.json").read_text(encoding="utf-8"))["photos"]
    categories = {json.loads(line)["category"] for line in (SET / "catalog.jsonl").read_text().splitlines()}
    assert len(photos) == 20 and {p["split"] for p in photos} == {"tune", "holdout"}
    for photo in photos:
        source = photo["source"]
        assert source.startswith("skimage:") or (ROOT / source).is_file(), source
        assert photo["accept"] and all(a == a.lower() for a in photo["accept"])
        for prefix in photo["relevant"]:
            assert any(c == prefix or c.startswith(prefix + " >") for c in categories), prefix


def test_the_catalog_is_a_few_hundred_products_and_keeps_the_sample():
    rows = [json.loads(line) for line in (SET / "catalog.jsonl").read_text(encoding="utf-8").splitlines()]
    sample = [json.loads(line) for line in (ROOT / "examples" / "catalog.jsonl").read_text().splitlines()]
    assert 250 <= len(rows) <= 500 and len({r["sku"] for r in rows}) == len(rows)
    assert rows[: len(sample)] == sample
    assert any("moped for city commuting" in r["description"] for r in rows)  # the near miss of issue 15


def test_generator_is_deterministic(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_relevance_catalog as gen
    finally:
        sys.path.pop(0)
    out = tmp_path / "catalog.jsonl"
    assert gen.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == (SET / "catalog.jsonl").read_text(encoding="utf-8")


def test_scoring_helpers():
    bench = _bench()
    assert bench.before_draft([("Egyptian cat", 0.41)], None) == ("An Egyptian cat.", "egyptian cat")
    assert bench.before_draft([("bobsled", 0.16)], 1)[0] == "A person with a bobsled."
    photo = {"person": False, "accept": ["cat"], "none_ok": False}
    assert bench.acceptable(photo, "cat", False) and not bench.acceptable(photo, "", False)
    assert not bench.acceptable(photo, "cat", True)  # people where there are none
    pairs = [{"relevant": True}, {"relevant": False}, {"relevant": True}]
    m = bench.prf(pairs, [True, False, False])
    assert (m["precision"], m["recall"]) == (1.0, 0.5)
