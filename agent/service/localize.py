"""/v1/localize on the batch job's code: the same LocalizeItem keys and LocalizeStage (refine + moderate)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agent.config import AgentConfig
from agent.errors import ConfigError
from agent.jobs.localize_job import LocalizeItem, LocalizeStage
from agent.jobs.manifest import digest, fingerprint
from agent.locales import normalize_locale
from agent.service.schemas import LocalizeBody


def localize_items(body: LocalizeBody, config: AgentConfig) -> list[LocalizeItem]:
    """One item per distinct target locale; bad locales, an unknown style or no refiner fail here (4xx)."""
    from prompts import load_preset

    if config.refiner.backend == "none":
        raise ConfigError("localization needs a refiner, but this service runs with refiner.backend = 'none'.",
                          fix="ask the operator to start the service with a refiner (local or vllm).")
    style = body.style or config.default_style
    load_preset(style, config.prompts_dir)
    locales = list(dict.fromkeys(normalize_locale(loc) for loc in body.locales))
    facts = [f.model_dump(mode="json") for f in body.facts]
    facts_hash = hashlib.sha256(json.dumps([(f["id"], f["text"]) for f in facts]).encode()).hexdigest()[:16]
    text_hash = hashlib.sha256(body.text.encode("utf-8")).hexdigest()
    source_key = body.id or digest("source", text_hash, facts_hash)
    items = []
    for locale in locales:
        fields = {"style": style, "locale": locale, "max_chars": body.max_chars, "source_locale": body.locale,
                  "facts": facts_hash}
        cache_key = digest("localize", text_hash, fingerprint(fields))
        items.append(LocalizeItem(key=digest("localize", cache_key, source_key), cache_key=cache_key, row=0,
                                  source_key=source_key, text=body.text, style=style, locale=locale,
                                  source_locale=body.locale, max_chars=body.max_chars, id=body.id, facts=facts))
    return items


def run_localize(agent: Any, items: list[LocalizeItem]) -> list[dict[str, Any]]:
    """Refine and moderate every item with the agent's loaded refiner and policy (runs in the model thread)."""
    stage = LocalizeStage(agent.config.model_dump(mode="json"), refiner=agent.refiner, policy=agent.policy)
    return stage(items)
