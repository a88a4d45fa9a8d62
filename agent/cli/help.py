"""Help that reads well at 80 columns: plain click formatting (the root app sets ``rich_markup_mode=None``, so flag
names are wrapped, never cut, and flags show no ``<bool>``), and arguments written as click writes them: ``IMAGE...``
in the usage line, not ``{IMAGE...}...``, and no ``<list[Path]>`` beside their name (their help says what they are).
Typer has no setting for the argument display, hence the two small overrides, applied once when the CLI loads."""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument


def _usage_display_name(self: Any) -> str:
    name = str(self.display_name_raw)
    if self.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if self.required else f"[{name}]"


def _no_type(self: Any, ctx: Any) -> None:
    return None


def apply() -> None:
    if hasattr(TyperArgument, "_usage_display_name"):
        TyperArgument._usage_display_name = _usage_display_name  # type: ignore[method-assign]
    if hasattr(TyperArgument, "display_type_rich"):
        TyperArgument.display_type_rich = _no_type  # type: ignore[method-assign]
