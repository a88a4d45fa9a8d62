"""Refiner backends (stage 2). ``REFINERS.get(name)`` imports the backend on first use."""

from caption_agent.refiners.base import RefineJob, Refiner, parse_refined
from caption_agent.refiners.chain import RefinerChain, build_chain
from caption_agent.registry import Registry

REFINERS: Registry[Refiner] = Registry(
    "refiner",
    {
        "local": "caption_agent.refiners.local:LocalRefiner",
        "vllm": "caption_agent.refiners.vllm:VLLMRefiner",
        "template": "caption_agent.refiners.template:TemplateRefiner",
    },
)

__all__ = ["REFINERS", "Refiner", "RefineJob", "RefinerChain", "build_chain", "parse_refined"]
