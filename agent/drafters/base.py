"""Stage 1 contract: a Drafter turns decoded images into N candidate captions each."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Sequence

from PIL import Image

from caption_agent.schemas import Draft, ImageInfo

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.config import DrafterSettings


class Drafter(ABC):
    """Base class of every drafter backend.

    Subclasses load their model in ``__init__`` (lazily, after checking their extra) and implement
    ``draft``. Capabilities are class attributes so routing can read them without loading anything.
    """

    name: ClassVar[str] = "base"
    gives_logprobs: ClassVar[bool] = False
    is_vlm: ClassVar[bool] = False
    model_id: str = ""

    def __init__(self, settings: DrafterSettings) -> None:  # noqa: B027 - the constructor routing calls
        """Build the backend from its settings (``DRAFTERS.get(name)(settings)``); load the model here."""

    @abstractmethod
    def draft(self, images: Sequence[Image.Image], infos: Sequence[ImageInfo], n: int) -> list[Draft]:
        """Return one Draft with up to ``n`` candidates per image, in input order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models or connections."""
