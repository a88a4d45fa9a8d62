"""/v1/localize on the library's localization (``caption_agent.localize``: the refine and moderate stages), with
the same keys as the batch job (``localize.row_pairs``: the job and the service share cache entries).

A request's work is bounded before it starts (facts, locales and text bytes: ``ServiceSettings.localize_*``),
and stops between locales once its caller is gone (deadline passed, or the client disconnected): the model
thread is shared by every request, so abandoned work would delay all of them.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from caption_agent._iter import surrogate_field
from caption_agent.config import AgentConfig
from caption_agent.errors import ConfigError
from caption_agent.locales import normalize_locale
from caption_agent.localize import Pair, localization_state, row_pairs, run_localization
from caption_agent.service.errors import BadRequestError, PayloadTooLargeError, RequestTimeoutError
from caption_agent.service.schemas import LocalizeBody
from caption_agent.service.settings import ServiceSettings

_DISCONNECT_POLL_S = 0.5


def check_limits(body: LocalizeBody, settings: ServiceSettings) -> None:
    """Refuse a request over the service's localization limits, or with text that is not Unicode."""
    bad = surrogate_field(body.model_dump(mode="python"))
    if bad is not None:
        raise BadRequestError(
            f"field {bad!r} is not valid Unicode text (it holds a lone surrogate, e.g. a JSON \\ud800 escape).",
            fix="send text encoded as UTF-8; escape characters outside the BMP as surrogate pairs.",
        )
    fix = "split the request (fewer facts or locales per call), or ask the operator to raise the limit."
    locales = len(dict.fromkeys(body.locales))
    if locales > settings.localize_max_locales:
        raise PayloadTooLargeError(
            f"the request asks for {locales} locales, over the limit `localize_max_locales` of "
            f"{settings.localize_max_locales}.",
            fix=fix,
        )
    if len(body.facts) > settings.localize_max_facts:
        raise PayloadTooLargeError(
            f"the request carries {len(body.facts)} facts, over the limit `localize_max_facts` of "
            f"{settings.localize_max_facts}.",
            fix=fix,
        )
    size = len(body.text.encode("utf-8")) + sum(len(f.model_dump_json().encode("utf-8")) for f in body.facts)
    if size > settings.localize_max_bytes:
        raise PayloadTooLargeError(
            f"the caption and its facts are {size} bytes, over the limit `localize_max_bytes` of "
            f"{settings.localize_max_bytes}.",
            fix=fix,
        )


def localize_items(body: LocalizeBody, config: AgentConfig, settings: ServiceSettings) -> list[Pair]:
    """One item per distinct target locale; limits, bad locales, an unknown style or no refiner fail here (4xx)."""
    from caption_agent.prompts import load_preset

    check_limits(body, settings)
    if config.refiner.backend == "none":
        raise ConfigError(
            "localization needs a refiner, but this service runs with refiner.backend = 'none'.",
            fix="ask the operator to start the service with a refiner (local or vllm).",
        )
    style = body.style or config.default_style
    load_preset(style, config.prompts_dir)
    locales = list(dict.fromkeys(normalize_locale(loc) for loc in body.locales))
    return list(row_pairs(body, locales, style=style))


def catalog_facts(agent: Any, sku: str) -> list[Any]:
    """The facts the agent's catalog holds for ``sku`` (runs in the model thread); UnknownSkuError if none."""
    from caption_agent.errors import UnknownSkuError
    from caption_agent.retrieval.retriever import product_facts

    products = agent.retriever.store.get([sku])
    if not products:
        raise UnknownSkuError(f"sku {sku!r} is not in the service's catalog.")
    return product_facts(products[0], 1.0)


def run_localize(agent: Any, items: list[Pair], stop: threading.Event | None = None) -> list[Any]:
    """Each item's CaptionResult, refined and moderated with the agent's loaded refiner and policy (runs in the
    model thread), one locale at a time; once ``stop`` is set the remaining locales are not started."""
    results: list[Any] = []
    for item in items:
        if stop is not None and stop.is_set():
            break
        state = localization_state(agent, item)
        run_localization(agent, [state])
        results.append(state.done)
    return results


async def localize_for(request: Any, state: Any, items: list[Pair]) -> list[Any]:
    """Run ``items`` on the model thread while the caller waits: past ``request_timeout_s`` -> 504; either way,
    and when the client disconnects, the work still queued for this request is dropped."""
    stop = threading.Event()
    work = asyncio.ensure_future(state.in_model_thread(run_localize, state.agent, items, stop))
    timeout = state.settings.request_timeout_s
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise RequestTimeoutError(f"localization took longer than {timeout:g} s.")
            done, _ = await asyncio.wait({work}, timeout=min(left, _DISCONNECT_POLL_S))
            if done:
                return work.result()
            if await request.is_disconnected():
                raise RequestTimeoutError("the client disconnected before localization finished.")
    finally:
        stop.set()
