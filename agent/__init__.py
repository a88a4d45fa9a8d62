"""caption-agent: publishable image captions from a two-stage agent (draft with a vision model, refine with an LLM).

Importing this package loads no model, starts no thread and touches no network; backends load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# One import name: pyproject.toml maps the folder agent/ to `caption_agent`. Imported by its folder's
# name (from the repository root) it would be a second copy of the package beside the installed one.
if __name__ != "caption_agent":
    raise ImportError(
        f"`import {__name__}` loads the repository folder agent/, not the package: "
        "import `caption_agent` instead (install the repository first: `make setup`, or `pip install -e .`)."
    )

from caption_agent._lazy import lazy_exports  # noqa: E402 - after the import-name check: a clear error first

__version__ = "0.1.0"

__all__ = [
    "AgentConfig",
    "CaptionAgent",
    "CaptionAgentError",
    "CaptionRequest",
    "CaptionResult",
    "ProductHint",
    "caption",
]

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.config import AgentConfig
    from caption_agent.errors import CaptionAgentError
    from caption_agent.pipeline import CaptionAgent, caption
    from caption_agent.schemas import CaptionRequest, CaptionResult, ProductHint

_LAZY = {
    "AgentConfig": "caption_agent.config",
    "CaptionAgent": "caption_agent.pipeline",
    "caption": "caption_agent.pipeline",
    "CaptionAgentError": "caption_agent.errors",
    "CaptionRequest": "caption_agent.schemas",
    "CaptionResult": "caption_agent.schemas",
    "ProductHint": "caption_agent.schemas",
}


__getattr__ = lazy_exports(__name__, _LAZY)
