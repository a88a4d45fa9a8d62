"""Policy engine: YAML policy files whose rules moderate images, untrusted inputs and captions.

``PolicyEngine.load()`` reads the bundled default (or a file of yours); importing this package loads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ModerationContext", "PolicyEngine", "ReviewQueue", "load_policy"]

if TYPE_CHECKING:  # pragma: no cover
    from policies.context import ModerationContext
    from policies.engine import PolicyEngine
    from policies.review import ReviewQueue
    from policies.schema import load_policy

_LAZY = {
    "ModerationContext": "policies.context",
    "PolicyEngine": "policies.engine",
    "ReviewQueue": "policies.review",
    "load_policy": "policies.schema",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'policies' has no attribute {name!r}")
