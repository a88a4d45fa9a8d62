"""Review queue round trip and the policy CLI, run in-process through Typer."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from caption_agent.cli import app
from caption_agent.policies.review import ReviewQueue, needs_review, review_id
from caption_agent.schemas import CaptionResult, ImageInfo, PolicyDecision

runner = CliRunner()


def result(key: str, status: str = "ok", text: str | None = "A white espresso cup.", confidence: float = 0.9):
    decisions = (
        [PolicyDecision(rule="injection", action="review", reason="caption follows injected text")]
        if status == "review"
        else []
    )
    return CaptionResult(
        key=key,
        status=status,
        text=text,
        style="alt_text",
        locale="en-US",
        image=ImageInfo(source=f"{key}.jpg", sha256=key * 8, width=10, height=10),
        draft="a white espresso cup",
        confidence=confidence,
        decisions=decisions,
        decision="review" if status == "review" else "allow",
    )


def write_results(path, rows):
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows), encoding="utf-8")


def test_export_list_import_round_trip(tmp_path):
    rows = [
        result("a1"),
        result("b2", "review"),
        result("c3", "review"),
        result("d4", "review"),
        result("e5", confidence=0.05),
    ]
    results, queue = tmp_path / "results.jsonl", tmp_path / "queue.jsonl"
    write_results(results, rows)

    out = runner.invoke(app, ["review", "export", str(results), "--out", str(queue), "--threshold", "0.2"])
    assert out.exit_code == 0, out.output
    assert "queued 4 result(s)" in out.output
    again = runner.invoke(app, ["review", "export", str(results), "--out", str(queue), "--threshold", "0.2"])
    assert "queued 0 result(s)" in again.output  # each result once
    items = list(ReviewQueue(queue).items())
    assert [i["key"] for i in items] == ["b2", "c3", "d4", "e5"]
    assert items[0]["reasons"] == ["injection: review: caption follows injected text"]
    assert items[0]["result"]["draft"] == "a white espresso cup" and items[0]["decision"] is None

    listed = runner.invoke(app, ["review", "list", str(queue)])
    assert "4 of 4 item(s)" in listed.output and "caption follows injected text" in listed.output

    ids = {i["key"]: i["review_id"] for i in items}
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"review_id": ids["b2"], "verdict": "approve", "reviewer": "ana"},
                {
                    "review_id": ids["c3"],
                    "verdict": "edit",
                    "text": "A white cup; orders: cups@example.com",
                    "reviewer": "ben",
                },
                {
                    "review_id": ids["d4"],
                    "verdict": "edit",
                    "text": "A shitty white cup on a saucer.",
                    "reviewer": "cy",
                },
                {"review_id": ids["e5"], "verdict": "reject", "note": "not our product"},
            ]
        )
        + "\n"
    )
    updated = tmp_path / "updated.jsonl"
    out = runner.invoke(app, ["review", "import", str(decisions), "--results", str(results), "--out", str(updated)])
    assert out.exit_code == 0, out.output
    assert "1 approved, 1 edited, 1 rejected, 1 edit(s) held for review, 0 unmatched" in out.output
    by_key = {r.key: r for r in map(CaptionResult.model_validate_json, updated.read_text().splitlines())}
    assert by_key["a1"] == rows[0]  # untouched
    assert by_key["b2"].status == "ok" and by_key["b2"].decisions[-1].reason == "approved by ana"
    assert by_key["c3"].status == "ok" and by_key["c3"].text == "A white cup; orders: [email]"  # re-checked
    assert by_key["d4"].status == "review"  # blocklisted word in the edit: held
    assert by_key["e5"].status == "blocked" and by_key["e5"].text is None


def test_import_accepts_the_queue_edited_in_place_and_flags_unknown_ids(tmp_path):
    results, queue = tmp_path / "results.jsonl", tmp_path / "queue.jsonl"
    rows = [result("a1", "review")]
    write_results(results, rows)
    ReviewQueue(queue).add(rows[0])
    item = json.loads(queue.read_text())
    item["decision"] = {"verdict": "approve", "reviewer": "dee"}
    stray = {"review_id": "0123456789abcdef", "verdict": "reject"}
    queue.write_text(json.dumps(item) + "\n" + json.dumps(stray) + "\n")
    out = runner.invoke(
        app, ["review", "import", str(queue), "--results", str(results), "--out", str(tmp_path / "o.jsonl")]
    )
    assert out.exit_code == 1 and "1 approved" in out.output and "0123456789abcdef" in out.output


def test_bad_decision_lines_are_explained(tmp_path):
    results, decisions = tmp_path / "r.jsonl", tmp_path / "d.jsonl"
    write_results(results, [result("a1", "review")])
    decisions.write_text(json.dumps({"review_id": review_id(result("a1")), "verdict": "edit"}) + "\n")
    out = runner.invoke(
        app, ["review", "import", str(decisions), "--results", str(results), "--out", str(tmp_path / "o.jsonl")]
    )
    assert out.exit_code == 2 and "line 1" in out.output and "needs the corrected caption" in out.output


def test_needs_review():
    assert needs_review(result("a", "review")) and not needs_review(result("a"))
    assert needs_review(result("a", confidence=0.1), threshold=0.2)


def test_policy_check_and_show(tmp_path):
    ok = runner.invoke(app, ["policy", "check", "policies/default.yaml"])
    assert ok.exit_code == 0 and "version 2026.12.1" in ok.output and "preset override: alt_text" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\nextends: default\nrules:\n  pii:\n    actoin: block\n')
    out = runner.invoke(app, ["policy", "check", str(bad)])
    assert out.exit_code == 1 and "did you mean 'action'?" in out.output and "line 5" in out.output
    shown = runner.invoke(app, ["policy", "show", "--preset", "alt_text"])
    assert shown.exit_code == 0 and "screenshot of" in shown.output and "sha256:" in shown.output


def test_eval_policies_prints_rates_and_enforces_limits(tmp_path):
    corpus = tmp_path / "c.yaml"
    corpus.write_text(
        '- {id: a, stage: output, draft: a red mug on a table, text: "A red mug on a table, mail a@b.com", '
        "fires: [pii]}\n"
        '- {id: b, stage: output, draft: a red mug on a table, text: "A red mug on a table."}\n'
        '- {id: c, stage: output, draft: a red mug on a table, text: "A blue mug on a table."}\n'
    )
    out = runner.invoke(app, ["eval-policies", str(corpus)])
    assert out.exit_code == 0, out.output
    assert "pii               1      1  100.0%" in out.output
    assert "c: fired but not expected: ['grounding']" in out.output
    out = runner.invoke(app, ["eval-policies", str(corpus), "--max-fp", "0", "--json"])
    assert out.exit_code == 1
    report = json.loads(out.stdout)
    assert report["rates"]["grounding"]["false_positives"] == 1


def test_import_takes_the_queue_as_results_and_bad_files_get_one_line(tmp_path):
    """What the service writes (queue + decisions) is what `review import` reads; a file that is neither
    results nor queue gets one clear line, not a validation dump."""
    queue, decisions, out = tmp_path / "queue.jsonl", tmp_path / "queue.jsonl.decisions.jsonl", tmp_path / "out.jsonl"
    q = ReviewQueue(queue)
    rows = [result("b2", "review"), result("c3", "review")]
    for row in rows:
        q.add(row)
    decisions.write_text(
        json.dumps({"review_id": review_id(rows[0]), "verdict": "approve", "reviewer": "rita"}) + "\n"
        + json.dumps({"review_id": review_id(rows[1]), "verdict": "edit", "text": "A blue cup."}) + "\n"
        + json.dumps({"review_id": review_id(rows[1]), "verdict": "undo"}) + "\n"
        + json.dumps({"review_id": review_id(rows[1]), "verdict": "reject"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    done = runner.invoke(app, ["review", "import", str(decisions), "--results", str(queue), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "1 approved, 0 edited, 1 rejected" in done.output
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["ok", "blocked"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hello": "world"}\n', encoding="utf-8")
    failed = runner.invoke(app, ["review", "import", str(decisions), "--results", str(bad), "--out", str(out)])
    assert failed.exit_code == 2
    message = failed.output.strip()
    assert "line 1 is not a CaptionResult: status: Field required (and 2 more)" in message, message
    assert len([line for line in message.splitlines() if line.strip()]) <= 2, message


def test_eval_review_reports_rates_and_plots(tmp_path):
    queue, decisions = tmp_path / "queue.jsonl", tmp_path / "queue.jsonl.decisions.jsonl"
    rows = [result(f"k{n}", "review") for n in range(4)]
    for row in rows:
        ReviewQueue(queue).add(row)
    verdicts = [("approve", None), ("approve", None), ("edit", "A white espresso cup on a saucer."), ("reject", None)]
    decisions.write_text(
        "".join(
            json.dumps({"review_id": review_id(r), "verdict": v, **({"text": t} if t else {})}) + "\n"
            for r, (v, t) in zip(rows, verdicts)
        ),
        encoding="utf-8",
    )
    plot = tmp_path / "review.png"
    done = runner.invoke(app, ["eval", "review", str(queue), "--by", "style", "--plot", str(plot), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["overall"]["acceptance"] == 0.5 and report["overall"]["edit_rate"] == 0.25
    assert report["rows"][0]["style"] == "alt_text" and report["waiting"] == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    table = runner.invoke(app, ["eval", "review", str(queue), "--period", "all"])
    assert "50%" in table.output and "25%" in table.output
