"""COCO metrics reproduce pycocoevalcap's own numbers; wrong captions score lower than right ones everywhere."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

from caption_agent.eval.coco import METRICS, coco_scores_groups
from caption_agent.eval.data import EvalInputError, load_references, load_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drafters"))

pytestmark = pytest.mark.slow  # pycocoevalcap's tokenizer and METEOR start Java (seconds each)

# A fixed toy set: three images, several human-style references each.
REFS = {
    "1": ["A red square on a white page.", "A bright red square in the middle.", "One red square, nothing else."],
    "2": ["A blue square on a white page.", "A square painted blue.", "A single blue square in the centre."],
    "3": ["A green square on a white page.", "A green block in the middle.", "A plain green square."],
}
RIGHT = {
    "1": "A red square in the middle of a page.",
    "2": "A blue square on a white page.",
    "3": "A single green square.",
}
WRONG = {
    "1": "A dog runs across a grassy park.",
    "2": "Two people ride bicycles downtown.",
    "3": "A plate of pasta on a wooden table.",
}


def _direct(refs: dict, cands: dict) -> dict[str, float]:
    """pycocoevalcap called the way COCOEvalCap.evaluate does (minus SPICE)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: [{"caption": c} for c in refs[i]] for i in cands}
    res = {i: [{"caption": c}] for i, c in cands.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        tok = PTBTokenizer()
        gts, res = tok.tokenize(gts), tok.tokenize(res)
        out: dict[str, float] = {}
        bleu, _ = Bleu(4).compute_score(gts, res)
        out.update({f"Bleu_{n + 1}": b for n, b in enumerate(bleu)})
        out["METEOR"], _ = Meteor().compute_score(gts, res)
        out["ROUGE_L"], _ = Rouge().compute_score(gts, res)
        out["CIDEr"], _ = Cider().compute_score(gts, res)
    return {k: float(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def scored():
    groups = coco_scores_groups(REFS, {"right": RIGHT, "wrong": WRONG})
    return {name: overall for name, (overall, _) in groups.items()}


def test_matches_pycocoevalcap_direct(scored):
    expected = _direct(REFS, RIGHT)
    assert set(scored["right"]) == set(METRICS) == set(expected)
    for metric in METRICS:
        assert scored["right"][metric] == pytest.approx(expected[metric], abs=1e-9), metric


def test_per_image_scores_cover_each_group():
    # "right" scored beside "wrong" equals the direct single-group run above: groups do not leak into each other.
    groups = coco_scores_groups(REFS, {"one": {"1": RIGHT["1"]}, "all": RIGHT})
    one, per_one = groups["one"]
    assert set(per_one) == {"1"} and set(groups["all"][1]) == set(RIGHT)
    assert all(set(v) == set(METRICS) for v in groups["all"][1].values())
    assert one["Bleu_1"] == pytest.approx(per_one["1"]["Bleu_1"])  # one image: corpus BLEU is its BLEU


def test_matches_cocoevalcap_with_coco_objects(tmp_path, scored):
    """COCOEvalCap itself, on pycocotools COCO objects, with SPICE (it needs a download) left out of its list."""
    import pycocoevalcap.eval as ev
    from pycocotools.coco import COCO

    ann = {
        "images": [{"id": int(i)} for i in REFS],
        "annotations": [
            {"id": n, "image_id": int(i), "caption": c}
            for n, (i, c) in enumerate((i, c) for i, cs in REFS.items() for c in cs)
        ],
    }
    (tmp_path / "refs.json").write_text(json.dumps(ann))
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": int(i), "caption": c} for i, c in RIGHT.items()]))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "refs.json"))
        cocores = coco.loadRes(str(tmp_path / "res.json"))
        evaluator = ev.COCOEvalCap(coco, cocores)
        spice = ev.Spice
        ev.Spice = _NoSpice  # the one scorer that cannot run offline; every other scorer is pycocoevalcap's
        try:
            evaluator.evaluate()
        finally:
            ev.Spice = spice
    for metric in METRICS:
        assert scored["right"][metric] == pytest.approx(evaluator.eval[metric], abs=1e-9), metric


class _NoSpice:
    def method(self):
        return "SPICE"

    def compute_score(self, gts, res):
        return 0.0, [0.0] * len(gts)


def test_wrong_scores_lower_on_every_metric(scored):
    for metric in METRICS:
        assert scored["wrong"][metric] < scored["right"][metric], metric
    assert all(0.0 <= v <= 1.0 for m, v in scored["right"].items() if m != "CIDEr")


def test_clip_s_right_beats_wrong(tmp_path):
    """CLIP-S through the project's ClipRanker on a tiny CLIP whose weights map colour words to colours."""
    import tiny_models
    from PIL import Image

    from caption_agent.eval.clip_score import clip_scores

    colors = {"1": (220, 20, 20), "2": (20, 20, 220), "3": (20, 200, 20)}
    for i, rgb in colors.items():
        Image.new("RGB", (64, 64), rgb).save(tmp_path / f"{i}.png")
    refs_path = _write_refs(tmp_path)
    clip = tiny_models.build_color_clip(tmp_path / "clip")
    refs = load_references(refs_path)
    right = load_results(
        _write_coco_results(
            tmp_path / "right.json", {i: f"A {c} square." for i, c in zip("123", ("red", "blue", "green"))}
        ),
        refs,
    )
    wrong = load_results(
        _write_coco_results(
            tmp_path / "wrong.json", {i: f"A {c} square." for i, c in zip("123", ("blue", "green", "red"))}
        ),
        refs,
    )
    r, w = clip_scores(right, refs, str(clip)), clip_scores(wrong, refs, str(clip))
    assert str(clip) in r["model"] and r["w"] == 2.5 and r["captions"] == 3
    assert r["mean"] > w["mean"] and all(0.0 <= x["clip_s"] <= 2.5 for x in r["per_caption"])


def _write_refs(folder: Path) -> Path:
    data = {
        "images": [{"id": int(i), "file_name": f"{i}.png"} for i in REFS],
        "annotations": [
            {"id": n, "image_id": int(i), "caption": c}
            for n, (i, c) in enumerate((i, c) for i, cs in REFS.items() for c in cs)
        ],
    }
    path = folder / "refs.json"
    path.write_text(json.dumps(data))
    return path


def _write_coco_results(path: Path, captions: dict[str, str]) -> Path:
    path.write_text(json.dumps([{"image_id": int(i), "caption": c} for i, c in captions.items()]))
    return path


def test_bad_inputs_say_what_to_fix(tmp_path):
    bad = tmp_path / "refs.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}))
    with pytest.raises(EvalInputError, match="at least one caption") as err:
        load_references(bad)
    assert "Fix:" in str(err.value)
    bad.write_text("{not json")
    with pytest.raises(EvalInputError, match="not valid JSON"):
        load_references(bad)
    refs = load_references(_write_refs(tmp_path))
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": 1}]))
    with pytest.raises(EvalInputError, match="'caption' string"):
        load_results(res, refs)
    with pytest.raises(EvalInputError, match="does not exist"):
        load_results(tmp_path / "missing.jsonl", refs)
