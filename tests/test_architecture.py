"""The applications' import contracts (pyproject.toml): every library module is either on the public surface the
applications may import or in the contract's list of internal modules, never both and never neither."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {"agent": "caption_agent", "prompts": "caption_agent.prompts", "retrieval": "caption_agent.retrieval",
           "policies": "caption_agent.policies"}  # fmt: skip
APPLICATIONS = ("jobs", "service", "eval", "cli")


def _library_modules() -> set[str]:
    found = set()
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.add(".".join([package, *parts]))
    return {m for m in found if m.count(".") == 0 or m.split(".")[1] not in APPLICATIONS}


def _contract(config: dict, contract_id: str) -> dict:
    return next(c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == contract_id)


def test_every_library_module_is_public_or_internal_for_the_applications():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    public = set(config["tool"]["caption-agent"]["public-modules"]) | {"caption_agent"}
    internal = _contract(config, "applications-public-surface")["forbidden_modules"]
    modules = _library_modules()

    def covered(module: str) -> list[str]:  # a listed internal package covers its descendants
        return [name for name in internal if module == name or module.startswith(name + ".")]

    both = sorted(m for m in modules if m in public and covered(m))
    neither = sorted(m for m in modules if m not in public and not covered(m))
    stale = sorted(set(public) - modules) + sorted(name for name in internal if name not in modules)
    assert not both, f"public and internal at once: {both}"
    assert not neither, (
        f"new library modules not classified: {neither}; add each to [tool.caption-agent] public-modules "
        "(the applications may import it) or to the applications-public-surface contract's forbidden_modules"
    )
    assert not stale, f"listed but not in the library: {stale}"


def test_the_applications_are_the_independence_contracts_modules():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    apps = [f"caption_agent.{name}" for name in APPLICATIONS]
    assert _contract(config, "applications-independent")["modules"] == apps
    assert _contract(config, "applications-public-surface")["source_modules"] == apps


def test_every_module_the_architecture_page_names_exists():
    """docs/architecture.md walks a reader through the modules of one caption, job and request: none may be stale."""
    import re

    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w/.])((?:[a-z_]+/)*[a-z_]+\.(?:py|yaml))\b", text))
    assert len(named) > 40
    missing = sorted(p for p in named if not any((REPO / root / p).exists() for root in ("", "agent")))
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
