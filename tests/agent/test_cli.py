"""The command line a newcomer meets: bad options refused before any model loads (one line, the fix, a "did you
mean"), help that reads at 80 columns, the exit summary and codes, and the surprises of issue #29."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caption_agent.cli import app

ROOT = Path(__file__).resolve().parents[2]
COFFEE = str(ROOT / "examples" / "images" / "coffee.jpg")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "80"}

# Runs the CLI in a fresh interpreter and reports whether a model library was imported: refusals must come first.
PROBE = """
import sys
from caption_agent.cli import app
try:
    code = app(sys.argv[1:], standalone_mode=False) or 0  # typer.Exit(n) comes back as n
except SystemExit as exc:
    code = exc.code
except BaseException as exc:
    code = getattr(exc, "exit_code", 1)
heavy = sorted(m for m in ("torch", "transformers", "chromadb", "sentence_transformers") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-P", "-c", PROBE, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120
    )


def refused(done: subprocess.CompletedProcess) -> str:
    """The one error line of a refusal; asserts exit 2 and that no model library was imported."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "HEAVY=\n" in done.stderr or done.stderr.rstrip().endswith("HEAVY="), done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert "Fix:" in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["caption", COFFEE, "--style", "alt-text"], "did you mean 'alt_text'?"),
        (["caption", COFFEE, "--locale", "en_uss"], "did you mean 'en-US'?"),
        (["caption", COFFEE, "examples/images/cofee.jpg"], "(argument 2 of 2) does not exist; did you mean"),
        (["caption", "examples/images"], "is a folder, not a file"),
        (["caption", COFFEE, "--catalog", "var/no-such-catalog"], "caption-agent ingest examples/catalog.jsonl"),
        (["caption", COFFEE, "--vlm", "florence2-base"], "did you mean 'florence-2-base'?"),
        (["caption", COFFEE, "--base-url", "http://127.0.0.1:1/v1"], "add --refiner vllm"),
        (["caption", COFFEE, "--vlm", "florence-2-base", "--drafter", "lite"], "contradicts --vlm"),
        (["caption", COFFEE, "--refiner", "vllm", "--base-url", "notaurl"], "refiner.vllm.base_url: 'notaurl' is not"),
        (["caption", COFFEE, "--vlm-url", "http://127.0.0.1:99999/v1"], "drafter.vllm.base_url"),
        (["eval", "captions", "nope.jsonl", "examples/eval/references.json"], "results file 'nope.jsonl'"),
    ],
)
def test_bad_options_are_refused_before_any_model_loads(args, expected):
    assert expected in refused(cli(*args))


def test_a_batch_with_a_wrong_style_refuses_to_start(tmp_path):
    out = tmp_path / "out.jsonl"
    line = refused(cli("batch", "caption", "examples/images", "--out", str(out), "--style", "seo-product"))
    assert "did you mean 'seo_product'?" in line
    assert not out.exists() and not list(tmp_path.iterdir())  # no output, no lock, no job file
    line = refused(cli("batch", "localize", str(out), "--locales", "de-DE,fr_FRR", "--out", str(tmp_path / "l.jsonl")))
    assert "does not exist" in line  # the input is checked first
    done = cli("batch", "caption", "examples/images", "--out", str(out), "--locale", "de-De", "--catalog", "nope")
    assert "catalog folder 'nope' does not exist" in refused(done)


def test_ingest_of_a_missing_file_creates_nothing(tmp_path):
    store = tmp_path / "catalog"
    line = refused(cli("ingest", "examples/catalogue.jsonl", "--catalog", str(store)))
    assert "catalog file 'examples/catalogue.jsonl' does not exist; did you mean 'catalog.jsonl'?" in line
    assert not store.exists()


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("caption-agent 0.")


def _commands(group, path=()):
    for name, command in group.commands.items():
        if command.hidden:
            continue
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_reads_well_at_80_columns():
    import typer

    root = typer.main.get_command(app)
    seen = 0
    for path, command in _commands(root):
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        text = result.output
        assert "<bool>" not in text, (path, text)
        assert "{" not in text.splitlines()[0], text.splitlines()[0]  # usage: IMAGE..., not {IMAGE...}...
        assert max(len(line) for line in text.splitlines()) <= 80, path
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in text, (path, opt)  # every flag name whole
        seen += 1
    assert seen >= 15
    caption_help = CliRunner().invoke(app, ["caption", "--help"], terminal_width=80).output
    assert "default: alt_text" in caption_help and "default: en-US" in caption_help


# --- the exit summary ------------------------------------------------------------------------------------------------
def test_the_summary_groups_failures_and_counts_statuses(capsys):
    from caption_agent.usage import Tally

    tally = Tally()
    error = {"type": "InvalidImageError", "message": "'{}' is not an image file. Fix: pass a JPEG or PNG file."}
    for i in range(5):
        tally.add(f"bad{i}.jpg", "error", {**error, "message": error["message"].format(f"bad{i}.jpg")})
    tally.add("a.jpg", "ok")
    tally.add("b.jpg", "review", reasons=[{"code": "subject.unnamed"}])
    assert tally.print() == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "7 item(s): 1 ok, 1 review, 0 blocked, 5 error"
    assert err[1].startswith("  error (InvalidImageError) x5: 'bad0.jpg', 'bad1.jpg', 'bad2.jpg' and 2 more: ")
    assert err[2] == "    fix: pass a JPEG or PNG file."
    assert "subject.unnamed x1" in err[3]
    held = Tally()
    held.add("b.jpg", "review")
    assert held.print() == 0 and held.print(fail_on_review=True) == 3


@pytest.mark.slow
def test_caption_prints_records_and_a_human_summary(tmp_path):
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not an image", encoding="utf-8")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "caption-agent"), "caption", COFFEE, str(text_file), "--refiner", "none"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["status"] for r in records][1] == "error" and records[1]["error"]["type"] == "InvalidImageError"
    assert "2 item(s): " in done.stderr and "1 error" in done.stderr
    assert f"error (InvalidImageError) x1: '{text_file}'" in done.stderr and "    fix: " in done.stderr


# --- the surprises ---------------------------------------------------------------------------------------------------
def test_a_manifest_typo_names_its_line_and_the_column_meant(tmp_path):
    from caption_agent.jobs.manifest import iter_items

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"image": COFFEE}) + "\n\n" + json.dumps({"image": COFFEE, "locle": "de-DE"}) + "\n",
        encoding="utf-8",
    )
    items = list(iter_items(manifest, style="alt_text", locale="en-US"))
    assert items[0].error is None
    message = items[1].error["message"]
    assert "m.jsonl line 3: unknown column 'locle'; did you mean 'locale'?" in message, message


def test_serve_reports_a_port_in_use_before_loading_anything():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        done = cli("serve", "--port", str(port))
    line = refused(done)
    assert f"port {port} on 127.0.0.1 is already in use" in line and f"--port {port + 1}" in line
    assert "startup complete" not in done.stderr.lower() and time.monotonic() - t0 < 60


@pytest.mark.slow
def test_a_batch_explains_its_failed_items_on_stderr(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_text("not an image", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["batch", "caption", str(folder), "--out", str(out), "--no-progress"])
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["status"] for r in records] == ["error", "error"]  # the records stay as they are
    assert "error (InvalidImageError) x2: " in result.stderr and "    fix: " in result.stderr
    assert "a.jpg" in result.stderr and "--retry-errors" in result.stderr
