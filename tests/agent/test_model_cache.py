"""The converted-weight cache: listing entries, pruning stale ones (library and `caption-agent cache`)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import filelock
import pytest
from typer.testing import CliRunner

from caption_agent.cli import app
from caption_agent.model_cache import build_once, entries, prune


def _entry(root: Path, name: str, source: Path | None) -> Path:
    stamp = {"folder": str(source)} if source is not None else {"source": "bundled"}
    return build_once(root / "onnx" / name, stamp, lambda tmp: (tmp / "model.onnx").write_bytes(b"x" * 1000))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("CAPTION_AGENT_CACHE_DIR", str(root))
    return root


def test_prune_removes_entries_whose_source_is_gone_and_unfinished_builds(cache: Path, tmp_path: Path) -> None:
    alive, gone = tmp_path / "model-a", tmp_path / "model-b"
    alive.mkdir()
    _entry(cache, "a-1", alive)
    _entry(cache, "b-1", gone)  # built from a folder that has since been deleted
    _entry(cache, "bundled-1", None)  # no source folder recorded: kept
    crashed = cache / "onnx" / ".c-1.x1y2z3"  # a killed build's temp folder: no stamp
    crashed.mkdir()
    (crashed / "model.onnx").write_bytes(b"half")

    listed = {e.path.name: e for e in entries()}
    assert set(listed) == {"a-1", "b-1", "bundled-1", ".c-1.x1y2z3"}
    assert listed["a-1"].size_bytes > 1000 and listed["a-1"].source == str(alive) and listed["a-1"].stale is None
    assert listed["b-1"].stale == "source folder is gone"
    assert listed[".c-1.x1y2z3"].stale == "unfinished build"

    assert {e.path.name for e in prune(dry_run=True)} == {"b-1", ".c-1.x1y2z3"}
    assert len(list(entries())) == 4  # a dry run removes nothing and leaves no lock behind
    assert not (cache / "onnx" / "c-1.lock").exists()
    assert {e.path.name for e in prune()} == {"b-1", ".c-1.x1y2z3"}
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == ["a-1", "a-1.lock", "bundled-1", "bundled-1.lock"]
    assert [e.path.name for e in prune(everything=True, only=lambda e: e.source == str(alive))] == ["a-1"]
    assert {e.path.name for e in prune(everything=True)} == {"bundled-1"}
    assert list(entries()) == []


def test_prune_leaves_a_build_in_progress_alone(cache: Path) -> None:
    building = cache / "onnx" / ".d-1.abc123"
    building.mkdir(parents=True)
    held = filelock.FileLock(str(cache / "onnx" / "d-1") + ".lock")
    with held:  # another process is exporting d-1 into its temp folder
        done = threading.Event()
        threading.Thread(target=lambda: (prune(everything=True), done.set())).start()
        assert done.wait(10)
        assert building.is_dir()
    assert [e.path.name for e in prune()] == [".d-1.abc123"]  # once the lock is free it is a leftover


def test_cache_cli_lists_and_prunes(cache: Path, tmp_path: Path) -> None:
    _entry(cache, "b-1", tmp_path / "deleted-model")
    runner = CliRunner()
    out = runner.invoke(app, ["cache", "dir"])
    assert out.exit_code == 0 and out.output.strip() == str(cache)
    out = runner.invoke(app, ["cache", "list", "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["stale"] == "source folder is gone" and row["bytes"] > 1000
    out = runner.invoke(app, ["cache", "prune"])
    assert out.exit_code == 0 and "removed 1 entries" in out.output
    assert not (cache / "onnx" / "b-1").exists()
