"""Name -> backend class registries, resolved lazily so importing them loads nothing heavy."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from agent.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a backend name to ``"module:Class"``; the module is imported on first use."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def register(self, name: str, target: str) -> None:
        """Add a backend: ``registry.register("mine", "my_pkg.drafter:MyDrafter")``."""
        self._entries[name] = target

    def get(self, name: str) -> type[T]:
        try:
            target = self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} backend {name!r}; known: {', '.join(self.names())}.",
                              fix=f"set the {self.kind} backend to one of: {', '.join(self.names())}.") from None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
