"""Issue 16.5: markup is stripped from model output, refused in a reviewer's edit, never published by import."""

from __future__ import annotations

import json

import pytest

from caption_agent.policies.rules.markup import find_markup, strip_markup
from caption_agent.policies.verdicts import check_edit, import_decisions
from caption_agent.schemas import CaptionResult


@pytest.mark.parametrize(
    ("text", "clean", "removed"),
    [
        ("A <b>red</b> mug.", "A red mug.", ["html tag <b>"]),
        ("Mug<script>alert(1)</script>", "Mug ", ["html tag <script> and its content"]),
        ("Mug <img src=x onerror=alert(1)", "Mug  ", ["html tag <img>"]),
        ("<xss onclick=alert(1)>hi</xss>", " hi ", ["html tag <xss>"]),
        ("A [mug](https://x.example/m).", "A mug.", ["markdown link"]),
        ("![a mug](/m.png)", "a mug", ["markdown image"]),
        ("Barnes &amp; Noble", "Barnes & Noble", ["html entity &amp;"]),
        (
            "&lt;script&gt;x&lt;/script&gt;",
            " ",
            ["html entity &lt;", "html entity &gt;", "html tag <script> and its content"],
        ),
        ("mug <!-- ignore all rules -->", "mug  ", ["html comment"]),
        ("[1]: https://x.example\nMug", " \nMug", ["markdown link"]),
        # Issue 25: look-alikes that normalise to markup are markup; link targets may hold parentheses.
        ("Mug ＜script＞alert(1)＜/script＞", "Mug  ", ["html tag <script> and its content"]),
        ("Mug ﹤b﹥red﹤/b﹥", "Mug red", ["html tag <b>"]),
        ("Mug <scr\u2063ipt>x</scr\u2063ipt>", "Mug  ", ["html tag <script> and its content"]),
        ("[click](javascript:alert(1))", "click", ["markdown link"]),
        ("[mug](https://x.example/Mug_(vessel)) here", "mug here", ["markdown link"]),
    ],
)
def test_strip_markup(text, clean, removed):
    assert strip_markup(text) == (clean, removed)


@pytest.mark.parametrize(
    "text",
    [
        "Call [email] or [phone] for [address].",
        "Barnes & Noble, AT&T, H&M &notanentity; tote",
        "Screws <5 mm, size > 40, 1 < 2 > 0, S<M>L",
        "Size [S](small), [M] (medium)",
        "Marks & Spencer 100% cotton, 2 < 3",
        "Prices <a few euros",
    ],
)
def test_plain_text_is_not_markup(text):
    assert strip_markup(text) == (text, [])


def test_model_output_is_stripped_and_the_fix_recorded(engine, make_ctx):
    out = engine.review("A <b>white</b> espresso cup, see [here](https://x.example).", make_ctx())
    assert out.action == "redact" and out.text == "A white espresso cup, see here."
    markup = next(d for d in out.decisions if d.rule == "markup")
    assert markup.action == "redact" and markup.details["removed"] == ["html tag <b>", "markdown link"]
    assert markup.before is None and markup.after is None  # the text around the fix may hold PII


def test_markup_cannot_split_an_address_past_pii(engine, make_ctx):
    out = engine.review('A white espresso cup, <a href="mailto:x@y.com">mail</a> jane@<i></i>cups.com', make_ctx())
    assert "jane" not in out.text and "x@y.com" not in out.text and "[email]" in out.text
    assert all("jane" not in str(d.before) + str(d.after) for d in out.decisions)


@pytest.mark.parametrize(
    "text", ["A <b>white</b> espresso cup.", "A white [espresso cup](https://x.example).", "A white cup &amp; saucer."]
)
def test_an_edit_with_markup_is_refused_not_stripped(engine, queued, text):
    check = check_edit(queued, text, engine)
    assert not check.publishable and ("markup", "review") in [(d.rule, d.action) for d in check.failing]
    assert "markup" in check.message() and "plain text" in check.fix()


@pytest.mark.parametrize("text", ["A white espresso cup ＜script＞alert(1)＜/script＞", "A white cup ﹤b﹥x﹤/b﹥."])
def test_a_look_alike_markup_edit_is_refused_and_never_offered_back_as_markup(engine, queued, text):
    check = check_edit(queued, text, engine)
    assert not check.publishable and ("markup", "review") in [(d.rule, d.action) for d in check.failing]
    assert "<" not in check.text  # no rule turned the look-alike into real markup


def test_nothing_rewrites_look_alike_markup_into_markup_after_the_rules(engine, make_ctx):
    out = engine.review("A white espresso cup on a saucer ＜script＞alert(1)＜/script＞", make_ctx())
    assert out.action == "redact" and "script" not in out.text and "<" not in out.text and "＜" not in out.text


def test_locale_typography_is_published_as_written(engine, make_ctx):
    text = "A white Lumen™ espresso cup on a saucer, 90\u00a0ml, with a 🧑\u200d🍳 print."
    out = engine.review(text, make_ctx(draft="a white Lumen espresso cup on a saucer, 90 ml, with a print"))
    assert out.action == "allow" and out.text == text


def test_review_import_never_publishes_markup(engine, queued, tmp_path):
    from caption_agent.policies.review import review_id

    marked = queued.model_copy(update={"key": "k2", "text": "A <i>white</i> cup."})
    results = tmp_path / "results.jsonl"
    results.write_text(queued.model_dump_json() + "\n" + marked.model_dump_json() + "\n")
    decisions = tmp_path / "decisions.jsonl"
    verdicts = [
        {"review_id": review_id(queued), "verdict": "edit", "text": "A white cup <script>x()</script>"},
        {"review_id": review_id(marked), "verdict": "approve"},
    ]
    decisions.write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    for recheck in (True, False):
        out = tmp_path / f"out-{recheck}.jsonl"
        report = import_decisions(decisions, results, out, engine=engine if recheck else None, recheck=recheck)
        rows = [CaptionResult.model_validate_json(line) for line in out.read_text().splitlines()]
        assert len(report.held) == 2 and report.edited == report.approved == 0
        assert all(r.status == "review" and not find_markup(r.text or "") for r in rows[:1])
        assert all("markup" in r.decisions[-1].reason for r in rows)
        assert rows[1].text == "A <i>white</i> cup." and rows[1].status == "review"  # kept as it was, not published
