"""/v1/localize on the batch job's code: the same LocalizeItem keys and LocalizeStage (refine + moderate)."""

from __future__ import annotations

from typing import Any

from caption_agent.config import AgentConfig
from caption_agent.errors import ConfigError
from caption_agent.jobs.localize_job import LocalizeItem, LocalizeStage, row_items
from caption_agent.locales import normalize_locale
from caption_agent.service.schemas import LocalizeBody


def localize_items(body: LocalizeBody, config: AgentConfig) -> list[LocalizeItem]:
    """One item per distinct target locale; bad locales, an unknown style or no refiner fail here (4xx)."""
    from caption_agent.prompts import load_preset

    if config.refiner.backend == "none":
        raise ConfigError(
            "localization needs a refiner, but this service runs with refiner.backend = 'none'.",
            fix="ask the operator to start the service with a refiner (local or vllm).",
        )
    style = body.style or config.default_style
    load_preset(style, config.prompts_dir)
    locales = list(dict.fromkeys(normalize_locale(loc) for loc in body.locales))
    return list(row_items(body, locales, style=style))


def catalog_facts(agent: Any, sku: str) -> list[Any]:
    """The facts the agent's catalog holds for ``sku`` (runs in the model thread); UnknownSkuError if none."""
    from caption_agent.errors import UnknownSkuError
    from caption_agent.retrieval.retriever import product_facts

    products = agent.retriever.store.get([sku])
    if not products:
        raise UnknownSkuError(f"sku {sku!r} is not in the service's catalog.")
    return product_facts(products[0], 1.0)


def run_localize(agent: Any, items: list[LocalizeItem]) -> list[dict[str, Any]]:
    """Refine and moderate every item with the agent's loaded refiner and policy (runs in the model thread)."""
    stage = LocalizeStage(agent.config.model_dump(mode="json"), refiner=agent.refiner, policy=agent.policy)
    return stage(items)
