"""The HTTP service (`caption-agent serve`): a FastAPI app over CaptionAgent, with micro-batching, API keys,
Prometheus metrics and a review page. Importing this package loads neither FastAPI nor any model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caption_agent._lazy import lazy_exports

__all__ = ["ServiceSettings", "create_app", "hash_key"]

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.service.app import create_app
    from caption_agent.service.security import hash_key
    from caption_agent.service.settings import ServiceSettings

__getattr__ = lazy_exports(
    __name__,
    {
        "create_app": "caption_agent.service.app",
        "hash_key": "caption_agent.service.security",
        "ServiceSettings": "caption_agent.service.settings",
    },
)
