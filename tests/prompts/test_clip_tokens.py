"""CLIP token counting: agrees with Hugging Face's CLIP tokenizer built from the same merges; fitting cuts cleanly."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from caption_agent.clip_tokens import clip_token_ids, count_clip_tokens, fit_clip_tokens
from caption_agent.prompts import load_preset

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "A red ceramic espresso cup on a wooden table.",
    "don't you think? I'll see; we'd've, it's THE cat's bowl",
    "Größe 42, Farbe: Blau. Ärmel aus 100% Baumwolle!",
    "東京の夜景、ネオンサイン。",
    "Привет, мир! Это тест.",
    "مرحبا بالعالم",
    "हिन्दी पाठ का उदाहरण",
    "café naïve résumé",
    "emoji 😀👍🏽 © ® ™ € £ ½ ²",
    "  multiple   spaces\tand\nlines ",
    "1234567890 3.14159 v2.0-beta_x (c) 2024 -- ok?!",
    "",
]


def test_known_counts():
    # start + end tokens, plus: a, red, ceramic, espresso, cup, on, a, wooden, table, "."
    assert count_clip_tokens("A red ceramic espresso cup on a wooden table.") == 12
    assert count_clip_tokens("") == 2
    assert count_clip_tokens("12") == 4  # digits are single tokens
    assert clip_token_ids("a")[0] == 49406 and clip_token_ids("a")[-1] == 49407


def test_cleanup_that_ftfy_would_do():
    assert count_clip_tokens("it’s “ﬁne”") == count_clip_tokens('it\'s "fine"')
    assert clip_token_ids("ＡＢＣ　１２３") == clip_token_ids("ABC 123")
    # CLIP unescapes HTML twice (Hugging Face's fast tokenizer does not, so this is not in the comparison below)
    assert clip_token_ids("salt &amp;amp; pepper &#39;s") == clip_token_ids("salt & pepper 's")


@pytest.mark.slow
def test_matches_huggingface_clip_tokenizer(tmp_path):
    """An independent implementation (tokenizers' BPE) over vocab/merges files written from the same data."""
    transformers = pytest.importorskip("transformers")
    from caption_agent.clip_tokens import _bpe

    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(k, k): v for k, v in _bpe().encoder.items()}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    raw = (ROOT / "agent" / "data" / "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    merges = gzip.decompress(raw).decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    hf = transformers.CLIPTokenizer.from_pretrained(str(tmp_path))
    captions = [line for line in TEXTS if line.strip()]
    captions += [p.instructions for p in map(load_preset, ("alt_text", "seo_product", "dataset_recaption"))]
    for text in captions:
        assert clip_token_ids(text) == hf(text)["input_ids"], text


def test_fit_clip_tokens_cuts_at_a_word_and_ends_cleanly():
    text = " ".join(["12 black cups, 34 saucers and 56 spoons;"] * 8)
    assert count_clip_tokens(text) > 77
    fitted = fit_clip_tokens(text, 77)
    assert count_clip_tokens(fitted) <= 77
    assert text.startswith(fitted[:-1]) and fitted.endswith(".")
    assert count_clip_tokens(fit_clip_tokens(text, 20)) <= 20
    short = "A red cup on a table."
    assert fit_clip_tokens(short) == short


def test_counter_is_pure_python():
    code = (
        "import sys, caption_agent.clip_tokens as c; c.count_clip_tokens('a cup'); "
        "print(sorted(m for m in ('torch', 'regex', 'ftfy', 'tokenizers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
