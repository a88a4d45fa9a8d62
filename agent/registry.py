"""Name -> backend class registries, resolved lazily so importing them loads nothing heavy."""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from caption_agent.errors import ConfigError

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

    def check(self, name: str, *also: str) -> None:
        """Raise ConfigError for a name that is neither registered nor in ``also`` (imports nothing)."""
        if name not in self._entries and name not in also:
            known = ", ".join([*self.names(), *also])
            raise ConfigError(
                f"unknown {self.kind} backend {name!r}; known: {known}.",
                fix=f"set the {self.kind} backend to one of: {known}.",
            )

    def build(self, name: str, section: Any, **kwargs: Any) -> T:
        """An instance of backend ``name`` from its settings section. A backend registered by another package gets
        its raw ``options`` entry validated by its ``settings_model`` (unknown keys refused there)."""
        cls: Any = self.get(name)
        if isinstance(section, dict):
            model = getattr(cls, "settings_model", None)
            try:
                section = model.model_validate(section) if model is not None else section
            except ValidationError as exc:
                raise ConfigError(
                    f"invalid settings for {self.kind} backend {name!r}: {exc}",
                    fix=f"check {self.kind}.options.{name} against the backend's settings.",
                ) from None
        return cls(section, **kwargs)  # type: ignore[no-any-return]

    def get(self, name: str) -> type[T]:
        self.check(name)
        target = self._entries[name]
        module, _, attr = target.partition(":")
        cls: type[T] = getattr(importlib.import_module(module), attr)
        return cls
