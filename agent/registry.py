"""Name -> backend class registries, resolved lazily so importing them loads nothing heavy.

One ``Registry`` per kind of backend: drafters, refiners, rankers, embedders, retrievers, policy engines and
policy rules. A package adds its own backend with ``register`` and selects it by name in the config.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, TypeVar

from pydantic import ValidationError

from caption_agent.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a backend name to ``"module:Class"`` (or the class); the module is imported on first use.

    ``discover`` (optional) lists more entries the first time the registry is read: the policy rules find their
    modules that way, so a new rule is one new module."""

    def __init__(
        self,
        kind: str,
        entries: dict[str, str | type[T]],
        discover: Callable[[], dict[str, str | type[T]]] | None = None,
    ) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self._discover = discover

    def _table(self) -> dict[str, str | type[T]]:
        if self._discover is not None:
            found, self._discover = self._discover(), None
            self._entries = {**found, **self._entries}
        return self._entries

    def names(self) -> list[str]:
        return sorted(self._table())

    def register(self, name: str, target: str | type[T]) -> None:
        """Add a backend: ``registry.register("mine", "my_pkg.drafter:MyDrafter")`` (or the class itself)."""
        self._table()[name] = target

    def unregister(self, name: str) -> None:
        """Remove a backend added with ``register`` (a test, or a plugin being unloaded)."""
        self._table().pop(name, None)

    def check(self, name: str, *also: str) -> None:
        """Raise ConfigError for a name that is neither registered nor in ``also`` (imports nothing)."""
        if name not in self._table() and name not in also:
            known = ", ".join([*self.names(), *also])
            raise ConfigError(
                f"unknown {self.kind} backend {name!r}; known: {known}.",
                fix=f"set the {self.kind} backend to one of: {known}.",
            )

    def options(self, name: str, section: Any) -> Any:
        """``section`` for backend ``name``: a raw ``options`` entry (a dict) validated by the backend's
        ``settings_model`` (unknown keys refused there); a settings model as it is."""
        if not isinstance(section, dict):
            return section
        model = getattr(self.get(name), "settings_model", None)
        try:
            return model.model_validate(section) if model is not None else section
        except ValidationError as exc:
            raise ConfigError(
                f"invalid settings for {self.kind} backend {name!r}: {exc}",
                fix=f"check {self.kind}.options.{name} against the backend's settings.",
            ) from None

    def build(self, name: str, section: Any, **kwargs: Any) -> T:
        """An instance of backend ``name`` from its settings section: ``Class(section, **kwargs)``. A backend
        registered by another package gets its raw ``options`` entry validated by its ``settings_model``."""
        cls: Any = self.get(name)
        return cls(self.options(name, section), **kwargs)  # type: ignore[no-any-return]

    def create(self, name: str, settings: Any, **deps: Any) -> T:
        """An instance of backend ``name`` built by its class's ``from_settings(settings, **deps)``, where
        ``settings`` is the whole config section of the stage (``[ranker]``, ``[retrieval]``, ``[policy]``)."""
        cls: Any = self.get(name)
        return cls.from_settings(settings, **deps)  # type: ignore[no-any-return]

    def get(self, name: str) -> type[T]:
        self.check(name)
        target = self._table()[name]
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        cls: type[T] = getattr(importlib.import_module(module), attr)
        return cls
