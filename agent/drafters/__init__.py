"""Drafter backends (stage 1). ``DRAFTERS.get(name)`` imports the backend on first use."""

from caption_agent.drafters.base import Drafter
from caption_agent.registry import Registry

DRAFTERS: Registry[Drafter] = Registry(
    "drafter",
    {
        "lite": "caption_agent.drafters.lite:LiteDrafter",
        "transformers": "caption_agent.drafters.hf:TransformersDrafter",
        "vllm": "caption_agent.drafters.vllm:VLLMDrafter",
    },
)

__all__ = ["DRAFTERS", "Drafter"]
