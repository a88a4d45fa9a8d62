"""`ok` is a caption a person would publish (issue 24), on a CI-sized subset of the trust set.

Eleven photos of the trust set's tune split (benchmarks/trustset/photos.json; 512 px copies in tests/eval/trust/,
graf1 at the benchmark's 768 px, where the misread shows; the whole set is measured by benchmarks/bench_trust.py)
captioned on the offline defaults (lite drafter, template
refiner) against the sample catalog, with the real image screen (NudeNet, MTCNN and its second check): nothing
published may be wrong (a subject the photo does not show, a person on a person-free photo, a catalog product
named), and no person-free photo may get a person. One of them (graf1, graffiti) is a photo the lite drafter
misreads ("a helmet", named only just): it must be held as subject.unsure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).resolve().parent / "trust"
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_trust  # noqa: E402 - the benchmark's judge: one copy of what "published wrong" means


@pytest.fixture(scope="module")
def photos() -> list[dict]:
    manifest = json.loads((ROOT / "benchmarks" / "trustset" / "photos.json").read_text(encoding="utf-8"))["photos"]
    by_id = {p["id"]: p for p in manifest}
    return [by_id[path.stem] for path in sorted(IMAGES.glob("*.jpg"))]


def test_the_subset_is_from_the_tune_split_and_small(photos):
    assert len(photos) == 11 and all(p["split"] == "tune" for p in photos)
    assert all((IMAGES / f"{p['id']}.jpg").stat().st_size < 100_000 for p in photos)


def test_nothing_published_is_wrong_and_no_person_is_invented(photos, catalog_dir, lite_drafter, embedder):
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.schemas import CaptionRequest

    agent = CaptionAgent(
        AgentConfig.load(retrieval={"catalog_dir": catalog_dir}), drafter=lite_drafter, embedder=embedder
    )
    try:
        results = agent.caption_batch(
            [CaptionRequest(image=str(IMAGES / f"{p['id']}.jpg"), style="alt_text", locale="en-US") for p in photos]
        )
    finally:
        agent.close()
    from caption_agent.policies.rules.base import RULES

    vocabulary, names = bench_trust._vocabulary(), bench_trust._catalog_names()
    wrong = {
        p["id"]: (r.text, why)
        for p, r in zip(photos, results)
        if r.status == "ok" and (why := bench_trust.judge(p, r.text or "", vocabulary, names))
    }
    # Colour-only captions ("A mostly navy scene.") are held by the informative rule (issue 24 point 1), where
    # the policy has it; the people and catalog checks (points 3 and 4) must hold on their own.
    if "informative" not in RULES.names():
        wrong = {k: v for k, v in wrong.items() if v[1] != "names no subject"}
    assert wrong == {}
    screened = {
        p["id"]: d.details.get("faces")
        for p, r in zip(photos, results)
        for d in r.decisions
        if d.rule == "image_safety"
    }
    assert screened and all(screened[p["id"]] == 0 for p in photos if p["people"] == 0), screened
    assert all(r.status in ("ok", "review") for r in results)
    graffiti = next(r for p, r in zip(photos, results) if p["id"] == "graf1")
    assert graffiti.status == "review" and "subject.unsure" in [h.code for h in graffiti.reasons], graffiti
    # Products found by similarity are never named, whatever the status.
    assert not any(n.lower() in (r.text or "").lower() for r in results for n in names)
