"""Refiner backends (stage 2). ``REFINERS.get(name)`` imports the backend on first use."""

from agent.refiners.base import Refiner, RefineJob, parse_refined
from agent.registry import Registry

REFINERS: Registry[Refiner] = Registry("refiner", {
    "local": "agent.refiners.local:LocalRefiner",
    "vllm": "agent.refiners.vllm:VLLMRefiner",
})

__all__ = ["REFINERS", "Refiner", "RefineJob", "parse_refined"]
