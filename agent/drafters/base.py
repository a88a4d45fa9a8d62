"""Stage 1 contract: a Drafter turns decoded images into N candidate captions each."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from PIL import Image
from pydantic import BaseModel

from caption_agent.schemas import Draft, ImageInfo


class Drafter(ABC):
    """Base class of every drafter backend.

    Subclasses load their model in ``__init__`` (lazily, after checking their extra) and implement
    ``draft``. Capabilities are class attributes so routing can read them without loading anything.
    """

    name: ClassVar[str] = "base"
    gives_logprobs: ClassVar[bool] = False
    is_vlm: ClassVar[bool] = False
    model_id: str = ""

    settings_model: ClassVar[type[BaseModel] | None] = None  # a registered backend's own settings section

    def __init__(self, settings: Any) -> None:  # noqa: B027 - the constructor routing calls
        """Build the backend from its own settings section (``drafter.<name>``); load the model here."""

    @abstractmethod
    def draft(
        self, images: Sequence[Image.Image], infos: Sequence[ImageInfo], n: int, style: str | None = None
    ) -> list[Draft]:
        """Return one Draft with up to ``n`` candidates per image, in input order. ``style`` is the requests' style
        preset: a VLM drafter asks its model with that style's task prompt (``presets.task_prompt``)."""

    def check_ready(self) -> object:
        """Readiness probe (the service's /readyz): a server-backed drafter checks its server; raises when the
        backend cannot answer. Default: ready once built."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models or connections."""
