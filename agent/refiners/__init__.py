"""Refiner backends (stage 2). ``REFINERS.get(name)`` imports the backend on first use."""

from caption_agent.refiners.base import RefineJob, Refiner, parse_refined
from caption_agent.registry import Registry

REFINERS: Registry[Refiner] = Registry(
    "refiner", {"local": "caption_agent.refiners.local:LocalRefiner", "vllm": "caption_agent.refiners.vllm:VLLMRefiner"}
)

__all__ = ["REFINERS", "Refiner", "RefineJob", "parse_refined"]
