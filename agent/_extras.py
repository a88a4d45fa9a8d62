"""Import heavy optional packages lazily, naming the extra that provides them."""

from __future__ import annotations

import importlib
from types import ModuleType

from caption_agent.errors import MissingExtraError


def require(module: str, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingExtraError telling which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised when extras are absent
        raise MissingExtraError(package or module.split(".")[0], extra, purpose) from exc
