"""Refiner backends (stage 2). ``REFINERS.get(name)`` imports the backend on first use."""

from typing import Any

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

__all__ = ["REFINERS", "Refiner", "RefineJob", "RefinerChain", "build_chain", "parse_refined", "template_data_digest"]


def template_data_digest(settings: Any) -> str:
    """A digest of the data files the template refiner writes with (compose templates, lexicon): part of a job's
    config fingerprint, so a changed template is a changed config. Loads no model."""
    from caption_agent.refiners.template import template_data_digest as digest

    return digest(settings)
