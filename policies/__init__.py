"""Policy engine: YAML policy files whose rules moderate images, untrusted inputs and captions.

``PolicyEngine.load()`` reads the bundled default (or a file of yours); importing this package loads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# One import name: pyproject.toml maps the folder policies/ to `caption_agent.policies`. Imported by its folder's
# name (from the repository root) it would be a second copy of the package beside the installed one.
if __name__ != "caption_agent.policies":
    raise ImportError(
        f"`import {__name__}` loads the repository folder policies/, not the package: "
        "import `caption_agent.policies` instead (install the repository first: `make setup`, or `pip install -e .`)."
    )

from caption_agent._lazy import lazy_exports  # noqa: E402 - after the import-name check: a clear error first

__all__ = [
    "POLICY_ENGINES",
    "ModerationContext",
    "PolicyBackend",
    "PolicyEngine",
    "ReviewQueue",
    "build_policy",
    "load_policy",
]

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.policies.backend import POLICY_ENGINES, PolicyBackend, build_policy
    from caption_agent.policies.context import ModerationContext
    from caption_agent.policies.engine import PolicyEngine
    from caption_agent.policies.review import ReviewQueue
    from caption_agent.policies.schema import load_policy

_LAZY = {
    "POLICY_ENGINES": "caption_agent.policies.backend",
    "PolicyBackend": "caption_agent.policies.backend",
    "build_policy": "caption_agent.policies.backend",
    "ModerationContext": "caption_agent.policies.context",
    "PolicyEngine": "caption_agent.policies.engine",
    "ReviewQueue": "caption_agent.policies.review",
    "load_policy": "caption_agent.policies.schema",
}


__getattr__ = lazy_exports(__name__, _LAZY)
