"""Comparing configurations: two small results files, one with right captions and one with wrong ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caption_agent.cli import app
from caption_agent.eval.coco import METRICS
from caption_agent.eval.data import EvalInputError

pytestmark = pytest.mark.slow  # pycocoevalcap's tokenizer and METEOR start Java (seconds each)
runner = CliRunner()

COLORS = {"1": "red", "2": "blue", "3": "green"}
REFS = {
    i: [f"A {c} square on a white page.", f"A bright {c} square in the middle.", f"One plain {c} square."]
    for i, c in COLORS.items()
}
# "right" names each image's own colour; "wrong" names another image's colour and another shape.
RIGHT = {i: f"A {c} square in the middle of a white page." for i, c in COLORS.items()}
WRONG = {
    "1": "Two green dogs run across a park.",
    "2": "A red bicycle leans on a wall.",
    "3": "A blue plate of pasta on a table.",
}
GROUPS = ("alt_text/en-US", "seo_product/en-US")


def _write(folder: Path) -> dict[str, Path]:
    refs = {
        "images": [{"id": int(i), "file_name": f"{i}.png", "sku": f"SQ-{i}"} for i in REFS],
        "annotations": [
            {"id": n, "image_id": int(i), "caption": c}
            for n, (i, c) in enumerate((i, c) for i, cs in REFS.items() for c in cs)
        ],
    }
    paths = {"refs": folder / "refs.json", "catalog": folder / "catalog.jsonl"}
    paths["refs"].write_text(json.dumps(refs))
    paths["catalog"].write_text(
        "".join(
            json.dumps({"sku": f"SQ-{i}", "title": f"{c.title()} Square Print", "attributes": {"color": c}}) + "\n"
            for i, c in COLORS.items()
        )
    )
    for name, captions in (("right", RIGHT), ("wrong", WRONG)):
        rows = [
            {"id": i, "status": "ok", "text": text, "style": style, "locale": "en-US", "decisions": []}
            for style in ("alt_text", "seo_product")
            for i, text in captions.items()
        ]
        rows.append({"id": "1", "status": "ok", "text": "Ein Quadrat.", "style": "alt_text", "locale": "de-DE"})
        if name == "wrong":  # one caption a policy rule fixed: the moderation share must differ
            rows[0]["decisions"] = [{"rule": "pii", "action": "redact", "reason": "test"}]
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    paths = _write(folder)
    out = runner.invoke(
        app,
        [
            "eval",
            "captions",
            str(paths["right"]),
            str(paths["refs"]),
            "--compare",
            f"wrong={paths['wrong']}",
            "--catalog",
            str(paths["catalog"]),
            "--out",
            str(folder / "report.json"),
            "--plot",
            str(folder / "eval.png"),
        ],
    )
    assert out.exit_code == 0, out.output
    return paths, out.output, json.loads((folder / "report.json").read_text()), folder / "eval.png"


def test_wrong_configuration_scores_lower_everywhere(compared):
    _, _, report, _ = compared
    assert report["comparison"] == ["right", "wrong"]  # RESULTS is labelled by its file stem
    right, wrong = report["runs"]["right"], report["runs"]["wrong"]
    for group in GROUPS:
        r, w = right["captions"][group], wrong["captions"][group]
        assert r["captions"] == w["captions"] == 3 and r["coverage"] == w["coverage"] == 1.0
        for metric in METRICS:
            assert w["metrics"][metric] < r["metrics"][metric], (group, metric)
    assert "skipped" in right["captions"]["alt_text/de-DE"] and "skipped" in wrong["captions"]["alt_text/de-DE"]
    assert wrong["grounding"]["precision"] < right["grounding"]["precision"]
    assert wrong["grounding"]["recall"] < right["grounding"]["recall"]
    assert right["moderation"]["changed"] == 0 and wrong["moderation"]["changed"] == 1


def test_each_run_is_the_single_file_report(compared):
    """Backwards compatible: runs[label] is what `eval captions` writes for that file alone (groups of one
    configuration are scored exactly as without the other)."""
    from caption_agent.eval.report import evaluate

    paths, _, report, _ = compared
    alone = evaluate(paths["wrong"], paths["refs"], catalog=paths["catalog"])
    assert report["runs"]["wrong"] == json.loads(json.dumps(alone))


def test_table_and_plot_list_both_configurations(compared):
    _, table, _, png = compared
    lines = table.splitlines()
    for group in GROUPS:
        at = next(n for n, line in enumerate(lines) if line.startswith(group))
        assert lines[at].split()[1] == "right" and lines[at + 1].split()[0] == "wrong", lines[at : at + 2]
        assert len(lines[at].split()) == len(lines[at + 1].split()) + 1 == 3 + len(METRICS)
    assert "[right] Grounding" in table and "[wrong] Moderation changed 1/7" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_comparisons_say_what_to_fix(tmp_path):
    from caption_agent.eval.report import compare

    paths = _write(tmp_path)
    base = ["eval", "captions", str(paths["right"]), str(paths["refs"])]
    out = runner.invoke(app, [*base, "--compare", str(paths["wrong"])])
    assert out.exit_code == 2 and "is not NAME=RESULTS" in out.output
    out = runner.invoke(app, [*base, "--compare", f"right={paths['wrong']}"])
    assert out.exit_code == 2 and "used twice" in out.output and "--label" in out.output
    with pytest.raises(EvalInputError, match="at least two") as err:
        compare({"right": paths["right"]}, paths["refs"])
    assert "Fix:" in str(err.value)
