"""One installable namespace: only `caption_agent` is importable, every dotted import target in the code
resolves, and a built wheel holds exactly one top-level package."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {
    "agent": "caption_agent",
    "prompts": "caption_agent.prompts",
    "retrieval": "caption_agent.retrieval",
    "policies": "caption_agent.policies",
}
TARGET = re.compile(r"[\"'](caption_agent(?:\.\w+)*)(?::(\w+))?[\"']")


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_the_repo_folders_are_not_top_level_modules(name, tmp_path):
    out = subprocess.run(
        [sys.executable, "-P", "-c", f"import {name}"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert out.returncode != 0 and f"No module named '{name}'" in out.stderr


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_a_folder_imported_by_its_name_from_the_repo_root_says_which_name_to_use(name):
    """From the repository root the folders are on sys.path: importing one by its folder name would load a
    second copy of the package; it fails instead, naming the import to use."""
    out = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode != 0
    assert "ImportError" in out.stderr and f"import `{FOLDERS[name]}` instead" in out.stderr, out.stderr


def test_python_m_caption_agent_runs_the_command_line():
    out = subprocess.run(
        [sys.executable, "-m", "caption_agent", "--version"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0 and out.stdout.startswith("caption-agent "), out.stderr


def test_the_installed_package_is_the_repo_code():
    import caption_agent
    import caption_agent.policies
    import caption_agent.prompts

    assert Path(caption_agent.__file__).parent == REPO / "agent"
    assert Path(caption_agent.prompts.__file__).parent == REPO / "prompts"
    assert Path(caption_agent.policies.__file__).parent == REPO / "policies"


def _source_files() -> list[Path]:
    return [p for folder in FOLDERS for p in (REPO / folder).rglob("*.py")]


def test_every_dotted_import_target_resolves():
    """Registries, lazy exports and job stage specs name their targets as strings: each must import."""
    targets = {m.groups() for path in _source_files() for m in TARGET.finditer(path.read_text(encoding="utf-8"))}
    assert len(targets) > 30  # registries, lazy exports, stage specs, resources
    for module, attr in sorted(targets, key=lambda t: (t[0], t[1] or "")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            if attr is None and "." in module:  # "pkg.attr" lazy export names
                parent, _, name = module.rpartition(".")
                assert hasattr(importlib.import_module(parent), name), module
                continue
            raise
        if attr:
            assert hasattr(mod, attr), f"{module}:{attr}"


def test_lazy_exports_resolve():
    for name in (
        "caption_agent",
        "caption_agent.jobs",
        "caption_agent.service",
        "caption_agent.retrieval",
        "caption_agent.policies",
        "caption_agent.drafters",
        "caption_agent.refiners",
    ):
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", []):
            assert getattr(mod, attr) is not None, f"{name}.{attr}"


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = set()
    for folder, package in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *rel)))
    assert set(config["packages"]) == found
    assert config["package-dir"] == {v: k for k, v in FOLDERS.items()}


def test_a_built_wheel_has_one_top_level_name(tmp_path):
    # A throw-away build folder: setuptools' default (REPO/build) would keep files the repo no longer has.
    (tmp_path / "setup.cfg").write_text(f"[build]\nbuild_base = {tmp_path / 'build'}\n")
    env = {**os.environ, "DIST_EXTRA_CONFIG": str(tmp_path / "setup.cfg")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env=env,
    )
    assert not (REPO / "build").exists()
    wheel = next(tmp_path.glob("caption_agent-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"caption_agent"}
    assert "caption_agent/policies/default.yaml" in names and "caption_agent/prompts/presets/alt_text.yaml" in names
    assert any(n.startswith("caption_agent/drafters/data/") for n in names)
    assert "caption_agent/data/bpe_simple_vocab_16e6.txt.gz" in names  # CLIP token counting (core)
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["caption_agent"]


def test_every_package_data_pattern_matches_a_file():
    """pyproject's package-data names only files that exist (a stale pattern hides a renamed or removed folder)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folder_of = {package: REPO / folder for package, folder in config["package-dir"].items()}
    stale = [
        f"{package}: {pattern}"
        for package, patterns in config["package-data"].items()
        for pattern in patterns
        if not any(folder_of.get(package, REPO / package.replace(".", "/")).glob(pattern))
    ]
    assert not stale, f"package-data patterns that match no file: {stale}"
