"""caption-agent: publishable image captions from a two-stage agent (draft with a vision model, refine with an LLM).

Importing this package loads no model, starts no thread and touches no network; backends load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent._lazy import lazy_exports

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
    from agent.config import AgentConfig
    from agent.errors import CaptionAgentError
    from agent.pipeline import CaptionAgent, caption
    from agent.schemas import CaptionRequest, CaptionResult, ProductHint

_LAZY = {
    "AgentConfig": "agent.config",
    "CaptionAgent": "agent.pipeline",
    "caption": "agent.pipeline",
    "CaptionAgentError": "agent.errors",
    "CaptionRequest": "agent.schemas",
    "CaptionResult": "agent.schemas",
    "ProductHint": "agent.schemas",
}


__getattr__ = lazy_exports(__name__, _LAZY)
