"""The moderation stage's contract: a PolicyBackend judges images, untrusted inputs and captions.

``POLICY_ENGINES`` names the backends (``rules``: the rules of a YAML policy file, ``policies/engine.py``);
``build_policy(settings)`` builds the one ``policy.backend`` names. Importing this module loads no rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from caption_agent.config_sections import PolicySettings
from caption_agent.registry import Registry
from caption_agent.schemas import GroundingFact, ImageInfo, ModerationOutcome, PolicyDecision

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from caption_agent.policies.context import ModerationContext
    from caption_agent.policies.rules.base import Rule

__all__ = ["POLICY_ENGINES", "PolicyBackend", "build_policy", "check_policy"]


class PolicyBackend(ABC):
    """Base of every policy engine. It judges and never decides what the pipeline does next: ``review`` returns
    an outcome (allow, redact, regenerate, fallback, review, block) with one decision per rule it ran.
    ``version`` and ``hash`` name the policy in every result's provenance; ``name`` is the registry name."""

    name: ClassVar[str] = "base"
    settings_model: ClassVar[type[BaseModel] | None] = None  # a registered backend's ``policy.options`` entry
    version: str = ""
    hash: str = ""

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> PolicyBackend:
        """Build from ``[policy]``. Default (a registered backend): ``cls(options)`` with ``policy.options.<name>``
        validated by ``settings_model``."""
        return cls(POLICY_ENGINES.options(cls.name, settings.options.get(cls.name, {})))  # type: ignore[call-arg]

    @abstractmethod
    def screen_image(
        self, image: Image.Image, info: ImageInfo, preset: str = ""
    ) -> tuple[ModerationOutcome, int | None]:
        """The image before any text is written: (outcome, faces counted or None when not looked for)."""

    @abstractmethod
    def prepare_inputs(
        self, facts: list[GroundingFact], image_text: str, ctx: ModerationContext
    ) -> tuple[list[GroundingFact], str, list[PolicyDecision]]:
        """Untrusted inputs before the prompt: (cleaned facts, cleaned image text, decisions)."""

    @abstractmethod
    def clean_text(self, text: str, source: str, ctx: ModerationContext) -> tuple[str, list[PolicyDecision]]:
        """One more untrusted text cleaned like the inputs ("" when it could not be vetted)."""

    @abstractmethod
    def review(self, text: str, ctx: ModerationContext, only: Any = None) -> ModerationOutcome:
        """The caption after refinement; ``only`` limits the run to the named rules."""

    def rules(self, preset: str) -> list[Rule]:
        """The rules in force for a style preset, in the order they run (the refiners read the glossary rule's
        terms there); none for an engine without rules."""
        return []

    def check_ready(self) -> object:
        """Readiness probe; raises when the engine cannot judge."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models."""


POLICY_ENGINES: Registry[PolicyBackend] = Registry(
    "policy engine", {"rules": "caption_agent.policies.engine:PolicyEngine"}
)


def build_policy(settings: PolicySettings) -> PolicyBackend:
    """The policy engine ``policy.backend`` names, built from ``settings`` (``rules``: ``policy.file``, else the
    bundled default policy)."""
    return POLICY_ENGINES.create(settings.backend, settings)


def check_policy(settings: PolicySettings) -> None:
    """ConfigError now for a policy engine no one registered (imports nothing)."""
    POLICY_ENGINES.check(settings.backend)
