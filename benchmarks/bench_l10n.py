"""Localization a merchant can rely on (issue 28): usable captions per locale on the sample catalog and on the
localization catalog (examples/catalog_l10n.jsonl, its glossary and expected renderings, committed before the
templates that use them).

    .venv/bin/pip install py3langid lingua-language-detector   # the language check's detectors (models in the wheels)
    .venv/bin/python -P benchmarks/bench_l10n.py [--vllm-url http://127.0.0.1:18080/v1 --vllm-model NAME]

Every product of each catalog is captioned in every locale the catalog speaks (its own locale and its i18n
locales) and every style listed (default: seo_product, alt_text, social) by the refine -> moderate loop with the
template refiner and the default policy plus the catalog's glossary (faces screened: 0). The draft is the subject a
lite drafter gives for the product's category (a fixed table below; a category no table entry names drafts no
subject). A caption is **usable** when all hold:

  ok        the loop published it (status ok);
  language  a detector other than the language rule's langdetect, restricted to the study's languages, names the
            locale's language, read on the caption with its names masked (the product's brand and the glossary's
            kept terms carry no language: "Nordvik" reads as Swedish): py3langid (langid.py); on captions of
            fewer than SHORT_WORDS words, which each detector misreads in its own way ("A plate. Dinner Plate." is
            German to langid.py, "A cup. Espresso Cup." Italian to lingua), py3langid or lingua (built for short
            text) must name it;
  glossary  every kept term of the expected file that the caption mentions is written exactly so, and no forbidden
            rendering appears (examples/catalog_l10n_expected.jsonl; the sample catalog has none);
  formats   every expected quantity whose number the caption states is written as expected (decimal mark, group
            mark, no-break space, unit symbol).

With --vllm-url, the localization catalog's product copy is also refined by the vLLM refiner alone (no template
fallback; the draft cannot stand in for another language) in --vllm-locales: what it published, how much the
glossary rule held, and how many published captions break the glossary (the promise: none).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CATALOGS = [ROOT / "examples" / "catalog.jsonl", ROOT / "examples" / "catalog_l10n.jsonl"]
GLOSSARY = ROOT / "examples" / "glossary_l10n.yaml"
EXPECTED = ROOT / "examples" / "catalog_l10n_expected.jsonl"
STUDY_LANGUAGES = ["en", "de", "fr", "es", "it", "pt", "nl", "pl", "sv", "ja", "zh"]
# What a lite drafter names for a product category (its last segment); lexicon names only. Categories absent here
# draft no subject, as scenes and close-ups do.
SUBJECTS = {
    "Mugs": "mug", "Cups": "cup", "Teapots": "teapot", "Kettles": "kettle", "Brewing": "kettle", "Bottles": "bottle",
    "Bowls": "bowl", "Plates": "plate", "Lamps": "table lamp", "Lighting": "lantern", "Candles": "candle",
    "Backpacks": "backpack", "Tents": "tent", "Jackets": "jacket", "Boots": "boot", "Scarves": "scarf",
    "Vases": "vase", "Clocks": "clock", "Umbrellas": "umbrella", "Baskets": "basket", "Chairs": "chair",
    "Coffee Beans": "coffee", "Toys": "toy", "Bouquets": "flower", "Space": "rocket", "Helmets": "helmet",
    "Gloves": "glove", "Figures": "toy", "Posters": "poster", "Tripods": "tripod", "Sneakers": "sneaker",
}  # fmt: skip


SHORT_WORDS = 8


class Detector:
    """py3langid, and lingua for captions under SHORT_WORDS words (both restricted to the study languages)."""

    def __init__(self) -> None:
        try:
            import py3langid.langid as langid
            from lingua import IsoCode639_1, LanguageDetectorBuilder
        except ImportError:
            sys.exit("this benchmark needs: .venv/bin/pip install py3langid lingua-language-detector")
        langid.set_languages(STUDY_LANGUAGES)
        self.langid = langid
        codes = [getattr(IsoCode639_1, c.upper()) for c in STUDY_LANGUAGES]
        self.lingua = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()

    def names(self, text: str, lang: str) -> bool:
        """True when the detectors read ``text`` as ``lang``: py3langid alone on text of SHORT_WORDS words or more;
        on shorter text, where each misreads a different part (py3langid "A plate. Dinner Plate." as German,
        lingua "A cup. Espresso Cup." as Italian), py3langid or lingua."""
        if str(self.langid.classify(text)[0]) == lang:
            return True
        if len(text.split()) >= SHORT_WORDS:
            return False
        found = self.lingua.detect_language_of(text)
        return found is not None and found.iso_code_639_1.name.lower() == lang


def _detector() -> Detector:
    return Detector()


def masked(text: str, names: list[str]) -> str:
    """``text`` without the names (longest first), whitespace folded."""
    for name in sorted(filter(None, names), key=len, reverse=True):
        text = text.replace(name, " ")
    return " ".join(text.split())


def _policy(tmp: Path) -> Any:
    from caption_agent.policies import PolicyEngine

    path = tmp / "policy.yaml"
    path.write_text(f"extends: default\nversion: bench-l10n\nrules:\n  glossary:\n    files: [{str(GLOSSARY)!r}]\n")
    return PolicyEngine.load(path)


def _jobs(catalog: Path, styles: list[str], only_locales: list[str] | None = None) -> list[Any]:
    from caption_agent.locales import normalize_locale
    from caption_agent.prompts import load_preset
    from caption_agent.retrieval.catalog import read_catalog
    from caption_agent.retrieval.retriever import product_facts
    from caption_agent.schemas import DraftSubject
    from caption_agent.state import CaptionState

    out = []
    for _, product in read_catalog(catalog):
        locales = [normalize_locale(product.locale), *product.i18n]
        noun = SUBJECTS.get((product.category or "").split(">")[-1].strip())
        article = "an" if noun and noun[0] in "aeiou" else "a"
        draft = f"{article.title()} {noun}." if noun else "A close-up in mostly grey tones."
        subject = DraftSubject(name=f"{article} {noun}", mass=0.8) if noun else DraftSubject()
        for locale in only_locales or locales:
            for style in styles:
                preset = load_preset(style)
                facts = product_facts(product, 0.9)
                item = CaptionState(
                    key=None,
                    style_name=style,
                    locale=locale,
                    preset=preset,
                    source=draft,
                    source_subject=subject,
                    facts=list(facts),
                    faces=0,
                    draft_ok=locale.startswith("en"),
                )
                item.bench = (product.sku, locale, style)  # type: ignore[attr-defined]
                item.names = [product.brand or ""]  # type: ignore[attr-defined]
                out.append(item)
    return out


def _expected() -> dict[tuple[str, str], dict[str, Any]]:
    from caption_agent.locales import normalize_locale

    rows = [json.loads(line) for line in EXPECTED.open(encoding="utf-8")]
    return {(r["sku"], normalize_locale(r["locale"])): r for r in rows}


def _number(rendering: str) -> str:
    """The leading number of an expected rendering, digits only ("2.200 W" -> "2200")."""
    head = ""
    for ch in rendering:
        if ch.isdigit() or ch in ".,\u00a0\u202f'":
            head += ch
        else:
            break
    return "".join(c for c in head if c.isdigit())


def check(
    text: str, locale: str, expected: dict[str, Any] | None, langid: Detector, names: list[str] | None = None
) -> dict[str, bool]:
    """The usable checks of one published caption (see the module docstring); ``names``: the product's brand."""
    from caption_agent.locales import language_code

    right = langid.names(masked(text, [*(names or []), *((expected or {}).get("keep", []))]), language_code(locale))
    glossary = formats = True
    if expected is not None:
        for term in expected.get("keep", []):
            mentions = term.casefold() in text.casefold()
            glossary &= (not mentions) or term in text
        for word in expected.get("forbidden", []):
            glossary &= word.casefold() not in text.casefold()
        digits = "".join(c if c.isdigit() else " " for c in text).split()
        for rendering in expected.get("quantities", {}).values():
            if _number(rendering) in digits or _number(rendering) in "".join(c for c in text if c.isdigit()):
                formats &= rendering in text
    return {"language": right, "glossary": glossary, "formats": formats}


def evaluate(items: list[Any], langid: Any, expected: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    samples: dict[str, list[str]] = defaultdict(list)
    held_by: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for item in items:
        sku, locale, style = item.bench
        row = table[locale]
        row["n"] += 1
        status = {"block": "blocked", "review": "review"}.get(item.outcome.action, "ok") if item.outcome else "error"
        if status != "ok" or not item.text:
            row[status] += 1
            rules = sorted({d.rule for d in item.decisions if d.action not in ("allow", "redact")})
            cause = "template: " + item.gap.reason.split(": ")[-1][:40] if item.gap and not rules else "+".join(rules)
            held_by[locale][cause or type(item.exc).__name__] += 1
            why = item.gap.reason if item.gap else "; ".join(d.reason for d in item.decisions if d.action != "allow")
            why = why or (f"{type(item.exc).__name__}: {item.exc}" if item.exc is not None else "")
            if len(samples[f"{locale} held"]) < 3:
                samples[f"{locale} held"].append(f"{sku}/{style}: {why[:160]}")
            continue
        row["ok"] += 1
        checks = check(item.text, locale, expected.get((sku, locale)), langid, item.names)
        for name, passed in checks.items():
            row[name] += passed
        row["usable"] += all(checks.values())
        if len(samples[f"{locale} published"]) < 2:
            samples[f"{locale} published"].append(f"{sku}/{style}: {item.text!r}")
        if not all(checks.values()) and len(samples[f"{locale} unusable"]) < 3:
            samples[f"{locale} unusable"].append(f"{sku}/{style}: {item.text!r} {checks}")
    return {
        "per_locale": {k: dict(v) for k, v in sorted(table.items())},
        "held_by": {k: dict(v) for k, v in sorted(held_by.items())},
        "samples": dict(samples),
    }


def print_table(title: str, result: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(
        f"{'locale':<12}{'n':>5}{'ok':>5}{'lang':>6}{'gloss':>7}{'fmt':>5}{'usable':>8}{'usable %':>10}"
        f"{'held':>6}{'ok-unusable':>13}"
    )
    for locale, row in result["per_locale"].items():
        n = row.get("n", 0)
        usable = row.get("usable", 0)
        cells = [row.get(k, 0) for k in ("ok", "language", "glossary", "formats")]
        print(
            f"{locale:<12}{n:>5}{cells[0]:>5}{cells[1]:>6}{cells[2]:>7}{cells[3]:>5}{usable:>8}"
            f"{100 * usable / n:>9.1f}%{n - cells[0]:>6}{cells[0] - usable:>13}"
        )
    for locale, causes in result["held_by"].items():
        print(f"  held {locale}: " + ", ".join(f"{k} {v}" for k, v in sorted(causes.items(), key=lambda kv: -kv[1])))
    for key, lines in result["samples"].items():
        for line in lines:
            print(f"  [{key}] {line}")


def run_template(styles: list[str], policy: Any, langid: Any, expected: Any) -> dict[str, Any]:
    from caption_agent.refiners.template import TemplateRefiner
    from caption_agent.stages.refine import refine

    refiner = TemplateRefiner()
    out = {}
    for catalog in CATALOGS:
        items = _jobs(catalog, styles)
        t0 = time.perf_counter()
        refine(refiner, policy, items, max_regenerations=2)
        result = evaluate(items, langid, expected)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        print_table(f"template refiner, {catalog.name}, styles {', '.join(styles)} ({result['seconds']} s)", result)
        out[catalog.name] = result
    return out


def run_vllm(
    url: str, model: str, locales: list[str], policy: Any, langid: Any, expected: Any, products: int
) -> dict[str, Any]:
    from caption_agent.refiners import REFINERS
    from caption_agent.stages.refine import refine

    refiner = REFINERS.build("vllm", {"base_url": url, "model": model})
    items = _jobs(CATALOGS[1], ["seo_product"], only_locales=locales)[: products * len(locales)]
    t0 = time.perf_counter()
    try:
        refine(refiner, policy, items, max_regenerations=2)
    finally:
        refiner.close()
    result = evaluate(items, langid, expected)
    held_by_glossary = sum(1 for i in items if any(d.rule == "glossary" and d.action != "allow" for d in i.decisions))
    published_bad = sum(
        1
        for i in items
        if i.outcome is not None
        and i.outcome.action not in ("review", "block")
        and i.text
        and not check(i.text, i.bench[1], expected.get((i.bench[0], i.bench[1])), langid, i.names)["glossary"]
    )
    result.update(
        glossary_decisions=held_by_glossary, published_glossary_violations=published_bad,
        seconds=round(time.perf_counter() - t0, 2),
    )  # fmt: skip
    print_table(f"vLLM refiner ({model}), catalog_l10n.jsonl seo_product ({result['seconds']} s)", result)
    print(
        f"  glossary rule fired on {held_by_glossary} items; published captions breaking the glossary: {published_bad}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", default="seo_product,alt_text,social")
    parser.add_argument("--vllm-url")
    parser.add_argument("--vllm-model", default="smollm2-135m-instruct")
    parser.add_argument("--vllm-locales", default="de-DE,fr-FR,it-IT,nl-NL,ja-JP")
    parser.add_argument("--no-template", action="store_true", help="Only the vLLM part.")
    parser.add_argument("--vllm-products", type=int, default=20, help="The first N products of catalog_l10n.")
    parser.add_argument("--out", type=Path, help="Write the numbers as JSON here.")
    args = parser.parse_args(argv)
    langid = _detector()
    expected = _expected()
    with tempfile.TemporaryDirectory() as tmp:
        policy = _policy(Path(tmp))
        report: dict[str, Any] = {}
        if not args.no_template:
            report["template"] = run_template(args.styles.split(","), policy, langid, expected)
        if args.vllm_url:
            from caption_agent.locales import normalize_locale

            locales = [normalize_locale(x) for x in args.vllm_locales.split(",")]
            report["vllm"] = run_vllm(
                args.vllm_url, args.vllm_model, locales, policy, langid, expected, args.vllm_products
            )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
