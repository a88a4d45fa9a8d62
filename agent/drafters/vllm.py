"""Stage 1 served by vLLM: a VLM behind vLLM's OpenAI-compatible chat API.

Images travel inside the request as base64 data URLs (the pipeline's bounded working copy,
``images.working_side``), never as remote URLs, so the server fetches nothing. One request per image asks for
``n`` choices with ``logprobs``; requests run concurrently (at most ``max_concurrency`` in flight) so the
server's continuous batching stays busy. Connection errors, timeouts, 429 and 5xx are retried by the OpenAI
client with backoff, as in the vLLM refiner.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import math
from typing import Any, Sequence

from PIL import Image

from caption_agent._extras import require
from caption_agent.config import VLLMDrafterSettings
from caption_agent.drafters import presets as vlm_presets
from caption_agent.drafters.base import Drafter
from caption_agent.drafters.hf import CHAT_PROMPT
from caption_agent.errors import BackendError, ConfigError, UnsupportedModelError
from caption_agent.http_retry import gather_bounded, map_openai_error, normalize_url, run_coroutine
from caption_agent.schemas import Candidate, Draft, ImageInfo

log = logging.getLogger(__name__)
START_HINT = (
    "start a VLM server, e.g. `vllm serve Qwen/Qwen2.5-VL-3B-Instruct --limit-mm-per-prompt "
    "'{\"image\":1}'` (docs/drafters.md), and set drafter.vllm.base_url to it"
)
# How vLLM words "this model takes no images" (0.32: "<name> is not a multimodal model").
_NOT_MULTIMODAL = ("not a multimodal", "does not support multimodal", "at most 0 image", "not support image")


def image_data_url(image: Image.Image, max_side: int | None = None) -> str:
    """JPEG data URL of ``image`` (already the bounded working copy); ``max_side`` shrinks it further."""
    img = image.convert("RGB")
    if max_side is not None and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _with_preset(settings: VLLMDrafterSettings, preset: vlm_presets.VLMPreset) -> VLLMDrafterSettings:
    if preset.vllm is None:
        raise UnsupportedModelError(
            f"VLM preset {preset.name!r} cannot be served by vLLM: {preset.vllm_command}.",
            fix=f"use the transformers drafter for it (drafter.backend = 'transformers', drafter.transformers.model "
            f"= {preset.name!r}), or pick a preset with a vLLM command (`caption-agent models list`).",
        )
    unset = {
        key: getattr(preset.decoding, key)
        for key in ("decoding", "max_new_tokens", "temperature")
        if key not in settings.model_fields_set
    }
    return settings.model_copy(update=unset)


class VLLMDrafter(Drafter):
    """N candidates per image from a VLM served by vLLM; checked with one real image request at start."""

    name = "vllm"
    gives_logprobs = True
    is_vlm = True

    settings_model = VLLMDrafterSettings

    def __init__(self, settings: VLLMDrafterSettings, *, check: bool = True) -> None:
        if not settings.base_url:
            raise ConfigError(
                "the vllm drafter needs drafter.vllm.base_url (e.g. http://127.0.0.1:8000/v1).",
                fix=f"set CAPTION_AGENT_DRAFTER__VLLM__BASE_URL; {START_HINT}.",
            )
        base_url: str = settings.base_url
        self._openai = require("openai", "vllm", "The vLLM drafter")
        # A preset name: served under that name (`caption-agent models show NAME` prints the serve command), with
        # the preset's prompt per style and decoding defaults.
        self.preset = vlm_presets.find_preset(settings.model) if settings.model else None
        if self.preset is not None:
            settings = _with_preset(settings, self.preset)
        self.settings = settings
        self.base_url = normalize_url(base_url)
        self.prompt = vlm_presets.task_prompt(self.preset, settings, None, CHAT_PROMPT)  # with no request style
        self._client = self._openai.OpenAI(**self._client_kwargs())
        self.served_model = settings.model or ""
        self.served_model = self.served_model or self._first_model()
        self.model_id = f"{self.served_model} @ {self.base_url}"
        if check:
            self.check_ready()

    # --- stage 1 -----------------------------------------------------------------------------------------------
    def draft(
        self, images: Sequence[Image.Image], infos: Sequence[ImageInfo], n: int, style: str | None = None
    ) -> list[Draft]:
        """One concurrent request per image; a server-wide failure raises, a per-image refusal leaves it empty."""
        urls = [image_data_url(im) for im in images]
        prompt = vlm_presets.task_prompt(self.preset, self.settings, style, CHAT_PROMPT)

        async def run() -> list[list[Candidate] | Exception]:
            client = self._openai.AsyncOpenAI(**self._client_kwargs())
            try:
                return await gather_bounded(
                    [functools.partial(self._adraft_one, client, u, n, prompt) for u in urls],
                    self.settings.max_concurrency,
                )
            finally:  # connections must not outlive this event loop
                await client.close()

        results = run_coroutine(run())
        errors = [r for r in results if isinstance(r, Exception)]
        fatal = [e for e in errors if not isinstance(e, BackendError) or getattr(e, "retryable", True)]
        if fatal or (errors and len(errors) == len(results)):
            raise (fatal or errors)[0]
        drafts = []
        for info, result in zip(infos, results):
            if isinstance(result, Exception):
                log.warning("vllm drafter: no candidates for %s: %s", info.source, result)
                result = []
            drafts.append(Draft(image=info, candidates=result, model_id=self.model_id))
        return drafts

    def check_ready(self) -> None:
        """Send one tiny real image request: the server is up, serves the model, and the model takes images."""
        probe = Image.new("RGB", (32, 32), (128, 128, 128))
        try:
            self._client.chat.completions.create(**self._request(image_data_url(probe, 32), 1, max_tokens=1))
        except Exception as exc:  # noqa: BLE001 - mapped to our errors
            raise self._map(exc) from exc

    def close(self) -> None:
        self._client.close()

    # --- internals ---------------------------------------------------------------------------------------------
    async def _adraft_one(self, client: Any, url: str, n: int, prompt: str) -> list[Candidate]:
        k = min(64, n + 2) if self.settings.decoding == "beam" else min(64, 2 * n)
        try:
            reply = await client.chat.completions.create(**self._request(url, k, prompt=prompt))
        except Exception as exc:  # noqa: BLE001 - mapped to our errors
            raise self._map(exc) from exc
        return self._candidates(reply, n)

    def _request(self, url: str, k: int, max_tokens: int | None = None, prompt: str | None = None) -> dict[str, Any]:
        # The prompt is text we wrote; the image is pixels. Nothing from the catalog or OCR goes into stage 1.
        text = self.prompt if prompt is None else prompt
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": [{"role": "user", "content": content}],
            "n": k,
            "logprobs": True,
            "max_tokens": max_tokens or self.settings.max_new_tokens,
        }
        if self.settings.decoding == "beam" and k > 1:
            body.update(temperature=0.0, extra_body={"use_beam_search": True})
        else:
            body.update(temperature=self.settings.temperature, top_p=0.95)
        return body

    def _candidates(self, reply: Any, n: int) -> list[Candidate]:
        best: dict[str, Candidate] = {}
        for choice in reply.choices:
            text = " ".join((choice.message.content or "").split())
            tokens = getattr(getattr(choice, "logprobs", None), "content", None) or []
            values = [t.logprob for t in tokens if t.logprob is not None and math.isfinite(t.logprob)]
            if not text:
                continue
            total = float(sum(values)) if values else None
            mean = total / len(values) if total is not None else None
            cand = Candidate(
                text=text[0].upper() + text[1:],
                drafter=self.name,
                score=round(math.exp(mean), 6) if mean is not None else 0.0,
                logprob=round(total, 4) if total is not None else None,
                evidence=[f"vlm:{self.served_model}", f"tokens={len(values)}", f"finish={choice.finish_reason}"],
            )
            key = text.lower()
            if key not in best or cand.score > best[key].score:
                best[key] = cand
        return sorted(best.values(), key=lambda c: -c.score)[:n]

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self.settings.api_key or "EMPTY",
            "timeout": self.settings.timeout_s,
            "max_retries": self.settings.max_retries,
        }

    def _first_model(self) -> str:
        try:
            models = [m.id for m in self._client.models.list().data]
        except Exception as exc:  # noqa: BLE001 - mapped to our errors
            raise self._map(exc) from exc
        if not models:
            raise BackendError(f"the server at {self.base_url} serves no model.", fix=START_HINT + ".")
        return str(models[0])

    def _map(self, exc: BaseException) -> BaseException:
        openai = self._openai
        if isinstance(exc, openai.BadRequestError):
            detail = str(getattr(exc, "message", exc))
            if any(marker in detail.lower() for marker in _NOT_MULTIMODAL):
                err = UnsupportedModelError(
                    f"the server at {self.base_url} serves {self.served_model!r}, which does not accept images "
                    f"({detail[:200]}); the vllm drafter expects a vision-language model.",
                    fix="serve a VLM (e.g. `vllm serve Qwen/Qwen2.5-VL-3B-Instruct`) and point drafter.vllm.base_url "
                    "and drafter.vllm.model at it; text-only models belong to the refiner.",
                )
                err.retryable = False  # type: ignore[attr-defined]
                return err
        return map_openai_error(
            exc,
            openai,
            self.base_url,
            retries=self.settings.max_retries,
            timeout_s=self.settings.timeout_s,
            hint=START_HINT,
            on_rejected="check drafter.vllm.model, max_new_tokens, images.working_side and the "
            "server's --max-model-len / --limit-mm-per-prompt.",
        )
