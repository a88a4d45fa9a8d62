"""Choose a drafter per config or per request, and fall back to ``lite`` only when the config allows it
(``drafter.fallback_to_lite``, off by default: a configured VLM that cannot load is an error).

A fallback is never silent: it returns a note that the pipeline writes into every affected result's
``provenance.fallbacks``.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

from PIL import Image

from caption_agent.config import DrafterSettings
from caption_agent.drafters import DRAFTERS
from caption_agent.drafters.base import Drafter
from caption_agent.errors import BackendError, MissingExtraError
from caption_agent.schemas import Draft, ImageInfo

log = logging.getLogger(__name__)
# Failures that mean "this backend cannot run here now"; configuration mistakes (ConfigError) are never hidden.
LOAD_FAILURES = (BackendError, MissingExtraError, OSError)


def _describe(settings: DrafterSettings) -> str:
    section = settings.section(settings.backend)
    where = getattr(section, "model", None) or getattr(section, "base_url", None) or ""
    return f"{settings.backend} ({where})" if where else settings.backend


def build_drafter(settings: DrafterSettings, lite: Callable[[], Drafter] | None = None) -> tuple[Drafter, str | None]:
    """Load the configured drafter; on a load failure use ``lite`` if ``fallback_to_lite``, with a note saying so.

    Raises the load error (which names the model and the fix) when falling back is not allowed. ``lite`` supplies
    an already loaded lite drafter; a new one is loaded otherwise.
    """
    DRAFTERS.check(settings.backend)  # an unknown name is a ConfigError, not a reason to fall back
    try:
        return DRAFTERS.build(settings.backend, settings.section(settings.backend)), None
    except LOAD_FAILURES as exc:
        if settings.backend == "lite" or not settings.fallback_to_lite:
            if hasattr(exc, "add_note"):
                exc.add_note(
                    "drafter.fallback_to_lite is false (the default), so the lite drafter was not used instead; set "
                    "it to true to caption with lite drafts, which are then held unless they name the subject."
                    if settings.backend != "lite"
                    else "the lite drafter has no fallback."
                )
            raise
        note = f"drafter: {_describe(settings)} failed to load, used lite instead: {exc}"
        log.warning(note)
        return (lite() if lite is not None else DRAFTERS.build("lite", settings.lite)), note


class DrafterRouter:
    """Drafters by name, each loaded once (with its fallback note); drafts a group, falling back at draft time too."""

    def __init__(self, settings: DrafterSettings) -> None:
        self.settings = settings
        self._drafters: dict[str, tuple[Drafter, str | None]] = {}
        self._adopted: set[int] = set()
        self._lock = threading.RLock()  # building a drafter may fetch the shared lite one

    def get(self, name: str | None = None) -> tuple[Drafter, str | None]:
        """The drafter for ``name`` (the config's backend when None) and its fallback note, if any."""
        name = name or self.settings.backend
        with self._lock:
            if name not in self._drafters:
                self._drafters[name] = build_drafter(
                    self.settings.model_copy(update={"backend": name}),
                    lite=None if name == "lite" else lambda: self.get("lite")[0],
                )
            return self._drafters[name]

    def adopt(self, name: str, drafter: Drafter) -> None:
        """Use an already loaded drafter for ``name`` unless one is loaded (shared models in tests and services)."""
        with self._lock:
            known = self._drafters.get(name)
            if known is None or known[0] is not drafter:
                self._drafters[name] = (drafter, None)
            self._adopted.add(id(drafter))  # its owner closes it, not this router

    def draft(
        self,
        name: str | None,
        images: Sequence[Image.Image],
        infos: Sequence[ImageInfo],
        n: int,
        style: str | None = None,
    ) -> tuple[list[Draft], Drafter, list[str]]:
        """Draft with ``name``'s drafter; if its server goes down mid-run and the config allows it, with lite.

        Returns the drafts, the drafter that wrote them and the fallback notes for these items.
        """
        drafter, note = self.get(name)
        notes = [note] if note else []
        try:
            return drafter.draft(images, infos, n, style=style), drafter, notes
        except BackendError as exc:
            if drafter.name == "lite" or not self.settings.fallback_to_lite or getattr(exc, "retryable", True) is False:
                raise
            lite, _ = self.get("lite")
            notes.append(f"drafter: {drafter.name} failed while drafting, used lite instead: {exc}")
            log.warning(notes[-1])
            return lite.draft(images, infos, n, style=style), lite, notes

    def close(self) -> None:
        with self._lock:
            for drafter, _ in self._drafters.values():
                if id(drafter) not in self._adopted:
                    drafter.close()
            self._drafters.clear()
