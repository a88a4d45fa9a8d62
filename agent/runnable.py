"""The agent as a LangChain Runnable, so `invoke`, `batch`, `ainvoke` and callbacks work.

Input, one of:

* an image: a path (``str`` or ``pathlib.Path``) or its bytes, captioned with the config's default style and
  locale, as ``caption-agent caption IMAGE`` does;
* a :class:`CaptionRequest`, or its dict (``{"image": "photo.jpg", "style": "seo_product", "locale": "de-DE",
  "hint": {"sku": "MUG-001"}}``; unset style and locale take the config's defaults).

Output: a :class:`CaptionResult` (bad items are error records, as with ``caption_batch``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, get_callback_manager_for_config

from caption_agent.schemas import CaptionRequest, CaptionResult

RunnableInput = CaptionRequest | dict | str | Path | bytes


class CaptionRunnable(Runnable[RunnableInput, CaptionResult]):
    """Input: an image path or bytes, a CaptionRequest or its dict; output: a CaptionResult. ``batch`` uses the
    agent's batched path."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    @staticmethod
    def _request(value: RunnableInput) -> CaptionRequest | str | Path | bytes:
        if isinstance(value, (CaptionRequest, str, Path, bytes)):
            return value  # caption_batch gives a path or bytes the config's default style and locale
        return CaptionRequest.model_validate(value)

    def invoke(self, input: RunnableInput, config: RunnableConfig | None = None, **kwargs: Any) -> CaptionResult:
        return self.batch([input], config)[0]

    def batch(
        self,
        inputs: list[RunnableInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[CaptionResult]:
        cfg = ensure_config(config[0] if isinstance(config, list) and config else config)  # type: ignore[arg-type]
        manager = get_callback_manager_for_config(cfg)
        run = manager.on_chain_start(None, {"inputs": len(inputs)}, name=cfg.get("run_name") or "CaptionAgent")
        try:
            results = self.agent.caption_batch([self._request(v) for v in inputs])
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end({"statuses": [r.status for r in results]})
        return results

    async def ainvoke(self, input: RunnableInput, config: RunnableConfig | None = None, **kwargs: Any) -> CaptionResult:
        return await asyncio.to_thread(self.invoke, input, config)

    async def abatch(
        self,
        inputs: list[RunnableInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[CaptionResult]:
        return await asyncio.to_thread(self.batch, inputs, config)
