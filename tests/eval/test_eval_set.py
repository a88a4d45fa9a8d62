"""The shipped evaluation set, end to end: caption it with the offline lite drafter, evaluate, check the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caption_agent.eval.coco import METRICS, coco_scores_groups
from caption_agent.eval.data import load_references

pytestmark = pytest.mark.slow
EVAL = Path(__file__).resolve().parents[2] / "examples" / "eval"


@pytest.fixture(scope="module")
def eval_results(tmp_path_factory, lite_drafter, embedder) -> Path:
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.config import RetrievalSettings
    from caption_agent.jobs.caption_job import CaptionJobOptions, run_caption_job
    from caption_agent.retrieval import CatalogStore, ingest_file

    folder = tmp_path_factory.mktemp("evalset")
    with CatalogStore.open(RetrievalSettings(catalog_dir=folder / "catalog"), embedder, writer=True) as store:
        ingest_file(EVAL / "catalog.jsonl", store)
    agent = CaptionAgent(
        AgentConfig.load(retrieval={"catalog_dir": folder / "catalog"}, refiner={"backend": "none"}),
        drafter=lite_drafter,
        embedder=embedder,
    )
    try:
        run_caption_job(EVAL / "manifest.jsonl", CaptionJobOptions(out=folder / "results.jsonl"), agent=agent)
    finally:
        agent.close()
    return folder / "results.jsonl"


def test_eval_set_is_well_formed():
    refs = load_references(EVAL / "references.json")
    assert len(refs.images) == 8 and all(3 <= len(r.captions) <= 5 for r in refs.images.values())
    skus = {json.loads(line)["sku"] for line in (EVAL / "catalog.jsonl").read_text().splitlines()}
    assert {r.sku for r in refs.images.values()} == skus
    assert all(refs.image_path(r, None).is_file() for r in refs.images.values())


def test_report_on_the_eval_set(eval_results, tmp_path):
    from caption_agent.eval.plot import plot_report
    from caption_agent.eval.report import evaluate, render_table

    report = evaluate(eval_results, EVAL / "references.json", catalog=EVAL / "catalog.jsonl")
    manifest = (EVAL / "manifest.jsonl").read_text().splitlines()
    assert report["records"] == len(manifest) and report["unmatched_records"] == 0
    scored = {k: v for k, v in report["captions"].items() if "metrics" in v}
    assert set(scored) == {"alt_text/en-US", "seo_product/en-US"}
    # With no refiner, nothing writes German: the de-DE rows go to review without text (never the English draft)
    assert "alt_text/de-DE" not in report["captions"]
    german = [json.loads(line) for line in eval_results.read_text().splitlines() if '"de-DE"' in line]
    assert len(german) == 2 and all(r["status"] == "review" and not r.get("text") for r in german)
    for row in scored.values():
        assert row["captions"] == 8 and row["coverage"] == 1.0 and set(row["metrics"]) == set(METRICS)
        assert all(0.0 <= v <= 1.0 for k, v in row["metrics"].items() if k != "CIDEr")
        assert 0.0 <= row["metrics"]["CIDEr"] <= 10.0
    comp = report["compliance"]
    assert set(comp) == {"alt_text", "seo_product"} and comp["alt_text"]["captions"] == 8
    for row in comp.values():
        assert 0.0 <= row["length_compliance"] <= 1.0 and sum(row["language"].values()) == row["captions"]
    g = report["grounding"]
    assert g["skipped_no_product"] == 0 and g["attributes"] > 0 and 0 <= g["mentioned"] <= g["attributes"]
    assert g["precision"] is None or 0.0 <= g["precision"] <= 1.0
    assert 0 <= report["moderation"]["changed"] <= report["moderation"]["records"] == len(manifest)
    assert report["clip_s"] is None  # no CLIP weights ship: CLIP-S is tested with a tiny CLIP elsewhere
    table = render_table(report)
    assert "alt_text/en-US" in table and "CIDEr" in table and "Grounding" in table
    png = plot_report(report, tmp_path / "eval.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_references_agree_with_their_own_image():
    """Leave-one-out on the shipped references: each image's first reference, scored against the others,
    beats the same sentence scored against the next image's references, on every metric."""
    refs = load_references(EVAL / "references.json")
    ids = sorted(refs.images)
    held = {i: refs.images[i].captions[0] for i in ids}
    rest = {i: refs.images[i].captions[1:] for i in ids}
    shifted = {i: held[ids[(n + 1) % len(ids)]] for n, i in enumerate(ids)}
    groups = coco_scores_groups(rest, {"right": held, "wrong": shifted})
    right, wrong = groups["right"][0], groups["wrong"][0]
    for metric in METRICS:
        assert wrong[metric] < right[metric], metric
