"""Drafter backends (stage 1). ``DRAFTERS.get(name)`` imports the backend on first use."""

from agent.drafters.base import Drafter
from agent.registry import Registry

DRAFTERS: Registry[Drafter] = Registry("drafter", {
    "lite": "agent.drafters.lite:LiteDrafter",
    "transformers": "agent.drafters.hf:TransformersDrafter",
    "vllm": "agent.drafters.vllm:VLLMDrafter",
})

__all__ = ["DRAFTERS", "Drafter"]
