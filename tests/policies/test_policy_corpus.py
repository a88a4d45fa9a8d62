"""The adversarial corpus against the real engine: every case's expected outcome, then the rates per rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from caption_agent.eval.policies import Expect, evaluate, load_corpus, run_case

CORPUS = Path(__file__).parent / "corpus"
CASES = load_corpus(CORPUS)
# Issue 25: the variant set written before the canonical-text fix (its first run on main: corpus/variants/BEFORE.txt).
VARIANTS = load_corpus(CORPUS / "variants")


def _marks(case):
    if case.render is not None:
        return [pytest.mark.slow]  # RapidOCR, about a second per image
    return []


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_case(engine, case):
    if case.render is not None:
        pytest.importorskip("rapidocr_onnxruntime", reason="needs the [ocr] extra")
    if case.stage == "image":
        pytest.importorskip("nudenet", reason="needs the [safety] extra")
    result = run_case(engine, case)
    assert not result.problems, f"{case.id}: {result.problems} -> {result.action} {result.text!r}"


def test_corpus_covers_every_rule_in_both_directions():
    positives = {rule for case in CASES for rule in case.fires}
    assert positives >= {"pii", "injection", "blocklist", "people", "grounding", "style", "language", "confidence"}
    assert sum(1 for c in CASES if not c.fires) >= 40, "enough clean cases to measure false positives"


def test_rates_on_the_text_corpus(engine):
    text_cases = [c for c in CASES if c.render is None and c.stage != "image"]
    report = evaluate(engine, text_cases)
    for name, rates in report.rates.items():
        if rates.positives:
            assert rates.catch_rate == 1.0, (name, report.table())
        assert rates.false_positives == 0, (name, report.table())


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in VARIANTS])
def test_variant_case(engine, case):
    result = run_case(engine, case)
    assert not result.problems, f"{case.id}: {result.problems} -> {result.action} {result.text!r}"


def test_variant_rates_every_class_caught_and_product_text_untouched(engine):
    report = evaluate(engine, VARIANTS)
    for name in ("pii", "injection", "blocklist", "markup", "people"):
        rates = report.rates[name]
        assert rates.positives >= 6 and rates.catch_rate == 1.0, (name, report.table())
    assert all(r.false_positives == 0 for r in report.rates.values()), report.table()
    product = [c for c in VARIANTS if c.id.startswith("pii-neg-product")]
    assert len(product) >= 15 and not [r for r in report.results if r.case in product and r.fired]


def test_what_the_rules_publish_passes_the_rules_again(engine):
    """Nothing rewrites a caption after the rules judged it: a redacted output, checked again, is left alone."""
    results = [run_case(engine, c) for c in VARIANTS if c.stage == "output"]
    redacted = [r for r in results if r.action == "redact"]
    assert len(redacted) >= 8
    for result in redacted:
        case = result.case.model_copy(update={"text": result.text, "fires": [], "expect": Expect()})
        again = run_case(engine, case)
        fired = again.fired & {"markup", "pii", "blocklist", "injection", "people", "style"}
        assert not fired and again.text == result.text, (result.case.id, result.text, again.text, fired)


def test_a_corpus_file_with_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    from caption_agent.errors import PolicyError

    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="aliases"):
        load_corpus(tmp_path)
