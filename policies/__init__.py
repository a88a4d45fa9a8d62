"""Policy engine: YAML policy files whose rules moderate images, untrusted inputs and captions.

``PolicyEngine.load()`` reads the bundled default (or a file of yours); importing this package loads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent._lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _LAZY)
