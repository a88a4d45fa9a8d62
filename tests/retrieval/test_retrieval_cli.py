"""`caption-agent ingest` and scripts/ingest_catalog.py: exit codes 0 / 1 / 2 and the printed summary."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from caption_agent.cli import app

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _load_script() -> Callable[[list[str]], int]:
    spec = importlib.util.spec_from_file_location("ingest_catalog", ROOT / "scripts" / "ingest_catalog.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_exit_codes(tmp_path: Path, small_rows: list, write_jsonl: Callable[..., Path], minilm: object) -> None:
    runner = CliRunner()
    store = tmp_path / "store"
    good = write_jsonl(small_rows)
    ok = runner.invoke(app, ["ingest", str(good), "--catalog", str(store)])
    assert ok.exit_code == 0, ok.output
    assert "added 4" in ok.output and not Path(f"{good}.rejects.jsonl").exists()

    bad = ROOT / "examples" / "catalog_bad.csv"
    rejects = tmp_path / "rej.jsonl"
    partial = runner.invoke(app, ["ingest", str(bad), "--catalog", str(store), "--rejects", str(rejects), "--json"])
    assert partial.exit_code == 1, partial.output
    summary = json.loads(partial.stdout)
    assert (summary["added"], summary["rejected"], summary["duplicates"]) == (2, 4, 1)
    assert len(rejects.read_text().splitlines()) == 4

    fatal = runner.invoke(app, ["ingest", str(tmp_path / "catalog.xlsx"), "--catalog", str(store)])
    assert fatal.exit_code == 2 and "unknown catalog format" in fatal.output
    unloadable = runner.invoke(
        app, ["ingest", str(good), "--catalog", str(tmp_path / "s2"), "--embedder", str(tmp_path / "no-such-model")]
    )
    assert unloadable.exit_code == 2 and "cannot load the embedder" in unloadable.output


def test_cli_refuses_an_embedder_mismatch(
    tmp_path: Path, small_rows: list, write_jsonl: Callable[..., Path], minilm: object, tiny_model_dir: Path
) -> None:
    runner = CliRunner()
    store = tmp_path / "store"
    good = write_jsonl(small_rows)
    assert runner.invoke(app, ["ingest", str(good), "--catalog", str(store)]).exit_code == 0
    changed = write_jsonl([dict(small_rows[0], title="Changed")], "changed.jsonl")
    mismatch = runner.invoke(app, ["ingest", str(changed), "--catalog", str(store), "--embedder", str(tiny_model_dir)])
    assert mismatch.exit_code == 2 and "was built with embedder" in mismatch.output
    check = runner.invoke(app, ["ingest", str(good), "--catalog", str(store), "--json"])
    assert json.loads(check.stdout)["unchanged"] == 4  # nothing was half-written by the refused run


def test_script_main_in_process(
    tmp_path: Path,
    small_rows: list,
    write_jsonl: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    minilm: object,
) -> None:
    main = _load_script()
    store = tmp_path / "store"
    assert main([str(write_jsonl(small_rows)), "--catalog", str(store), "--batch-size", "2"]) == 0
    assert "added 4" in capsys.readouterr().out
    assert main([str(write_jsonl(small_rows)), "--catalog", str(store), "--full-snapshot"]) == 0
    assert "unchanged 4" in capsys.readouterr().out
    assert main(["--catalog", str(store)]) == 2  # usage error: FILE is missing
