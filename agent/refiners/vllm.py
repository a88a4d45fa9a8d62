"""Stage 2 served by vLLM: LangChain ``ChatOpenAI`` against a vLLM OpenAI-compatible server.

* Output is constrained with ``response_format`` json_schema (current vLLM ignores ``guided_json``); the schema is
  derived from :class:`RefinedCaption`, with every string and list bounded so a weak model cannot run to
  ``max_tokens``. Answers are validated into pydantic; an unusable answer is resampled ``output_retries`` times,
  then :class:`ModelOutputError` lets the pipeline fall back to the ranked draft.
* Connection errors, timeouts, 429 and 5xx are retried by the OpenAI client with exponential backoff (0.5 s
  doubling, at most 8 s, jittered), ``settings.max_retries`` times; then the item gets a retryable error.
* Before the first request (and again after the server was found down) a TCP connect probes the server;
  a server that is down fails every job at once with :class:`RefinerUnavailableError` instead of after the
  client's retries, and the refiner chain moves on to its next link (``refiner.on_unavailable``).
* ``refine_many`` runs the jobs concurrently under a semaphore so the server's continuous batching stays busy.
  The system message depends only on the preset, so vLLM's prefix cache reuses it across requests.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from typing import Any, Sequence

from pydantic import ValidationError

from caption_agent._extras import require
from caption_agent.config import VLLMRefinerSettings
from caption_agent.errors import BackendError, BackendUnavailableError, ConfigError, ModelOutputError
from caption_agent.http_retry import normalize_url, run_coroutine, unavailable
from caption_agent.refiners.base import RefineJob, Refiner, parse_refined
from caption_agent.schemas import RefinedCaption

# The whole sequence that gives a working server on a fresh checkout (`make vllm-up` runs the same three steps).
START_HINT = (
    "start the development server: `make vllm-up` (or, from the repo root: `python scripts/vllm_server.py setup && "
    ".venv/bin/python scripts/vllm_server.py convert && python scripts/vllm_server.py start`), then pass "
    "`--refiner vllm --base-url http://127.0.0.1:18080/v1` or set refiner.vllm.base_url"
)
_PROBE_TIMEOUT_S = 3.0  # a listening server accepts at once; a stopped one refuses at once
_DOWN_RECHECK_S = 5.0  # after a failed probe, later batches fail at once for this long instead of probing again
_RETRY_TEMPERATURE = 0.7  # greedy decoding would repeat the same unusable answer on a retry
_FACT_ID_MAX = 64


class RefinerUnavailableError(BackendUnavailableError):
    """The refiner's server cannot be reached: a reason to let the next link of the refiner chain write."""

    retryable = True


def refined_caption_schema(job: RefineJob) -> dict[str, Any]:
    """JSON schema for one job's answer, derived from RefinedCaption and tightened to the job.

    The caption is bounded by the job's length budget, fact ids are limited to the facts actually given (an
    ``enum``), and no other keys are allowed, so constrained decoding always terminates with usable JSON.
    """
    base = RefinedCaption.model_json_schema()["properties"]
    ids = list(dict.fromkeys(f.id[:_FACT_ID_MAX] for f in job.facts)) if job.preset.use_facts else []
    limit = min(job.limit, base["caption"]["maxLength"])
    item: dict[str, Any] = {"type": "string", "maxLength": _FACT_ID_MAX}
    if ids:
        item["enum"] = ids
    return {
        "title": "RefinedCaption",
        "type": "object",
        "properties": {
            "caption": {
                "type": "string",
                "description": base["caption"]["description"],
                "minLength": min(limit, max(3, job.preset.min_chars // 2)),
                "maxLength": limit,
            },
            "facts_used": {
                "type": "array",
                "description": base["facts_used"]["description"],
                "items": item,
                "maxItems": min(len(ids), base["facts_used"]["maxItems"]),
            },
        },
        "required": ["caption", "facts_used"],
        "additionalProperties": False,
    }


def response_format(job: RefineJob) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "RefinedCaption", "strict": True, "schema": refined_caption_schema(job)},
    }


class VLLMRefiner(Refiner):
    """Refines drafts through a vLLM server. ``settings.base_url`` is required; ``model`` is discovered if unset."""

    name = "vllm"

    settings_model = VLLMRefinerSettings

    def __init__(self, settings: VLLMRefinerSettings, *, output_retries: int = 1) -> None:
        if not settings.base_url:
            raise ConfigError(
                "the vllm refiner needs refiner.vllm.base_url (e.g. http://127.0.0.1:18080/v1).",
                fix=f"set CAPTION_AGENT_REFINER__VLLM__BASE_URL to the server's URL; {START_HINT}",
            )
        self._lc = require("langchain_openai", "vllm", "The vLLM refiner", package="langchain-openai")
        self._openai = require("openai", "vllm", "The vLLM refiner")
        self.settings = settings
        self.output_retries = max(0, output_retries)
        self.base_url = normalize_url(settings.base_url)
        self._model = settings.model
        self.model_id = settings.model or ""
        self._lock = threading.Lock()
        self._sync_llm: Any = None
        self._async_llms: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self.stats = {"requests": 0, "in_flight": 0, "peak_in_flight": 0}
        self._down_since: float | None = None  # monotonic time of the last failed probe / connection
        self._probed = False

    # --- one request --------------------------------------------------------------------------------------------
    def complete(self, messages: list[dict[str, str]], job: RefineJob, *, temperature: float | None = None) -> str:
        """One schema-constrained chat completion; returns the raw answer text."""
        llm = self._llm()
        self._enter()
        try:
            reply = llm.invoke(messages, **self._call_kwargs(job, temperature))
        except Exception as exc:  # noqa: BLE001 - mapped to our errors, others re-raised
            raise self._map_error(exc) from exc
        finally:
            self._leave()
        return _content(reply)

    async def acomplete(
        self, messages: list[dict[str, str]], job: RefineJob, *, temperature: float | None = None
    ) -> str:
        llm = await self._allm()
        self._enter()
        try:
            reply = await llm.ainvoke(messages, **self._call_kwargs(job, temperature))
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc) from exc
        finally:
            self._leave()
        return _content(reply)

    # --- refine with bounded schema retries ------------------------------------------------------------------------
    def refine(self, job: RefineJob) -> RefinedCaption:
        self.ensure_reachable()
        messages = job.prompt().messages
        notes: list[str] = []
        for attempt in range(self.output_retries + 1):
            try:
                raw = self.complete(messages, job, temperature=self._temperature(attempt))
                return _finish(validate_answer(raw, job), notes)
            except ModelOutputError as exc:
                notes.append(exc.reason)
        raise _give_up(notes)

    async def arefine(self, job: RefineJob) -> RefinedCaption:
        messages = job.prompt().messages
        notes: list[str] = []
        for attempt in range(self.output_retries + 1):
            try:
                raw = await self.acomplete(messages, job, temperature=self._temperature(attempt))
                return _finish(validate_answer(raw, job), notes)
            except ModelOutputError as exc:
                notes.append(exc.reason)
        raise _give_up(notes)

    def refine_many(self, jobs: Sequence[RefineJob]) -> list[RefinedCaption | Exception]:
        """Refine ``jobs`` concurrently (at most ``max_concurrency`` in flight); results in job order.

        A job that fails yields its exception in place: BackendError subclasses carry ``retryable``.
        """
        if not jobs:
            return []
        try:
            self.ensure_reachable()
        except RefinerUnavailableError as exc:
            return [exc] * len(jobs)

        async def run_and_close() -> list[RefinedCaption | Exception]:
            try:
                return await self.arefine_many(jobs)
            finally:  # this loop ends here; its connections must not outlive it
                llm = self._async_llms.pop(asyncio.get_running_loop(), None)
                if llm is not None:
                    await llm.root_async_client.close()

        return run_coroutine(run_and_close())

    async def arefine_many(self, jobs: Sequence[RefineJob]) -> list[RefinedCaption | Exception]:
        gate = asyncio.Semaphore(self.settings.max_concurrency)

        async def one(job: RefineJob) -> RefinedCaption | Exception:
            async with gate:
                try:
                    return await self.arefine(job)
                except Exception as exc:  # noqa: BLE001 - recorded per item by the caller
                    return exc

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    def ensure_reachable(self) -> None:
        """Probe the server once (a TCP connect, a few seconds at most) before the first request, and again once
        it was found down; raise :class:`RefinerUnavailableError` at once while it is down."""
        with self._lock:
            down_since, probed = self._down_since, self._probed
        if down_since is not None and time.monotonic() - down_since < _DOWN_RECHECK_S:
            raise _down(self.base_url, "it did not answer a moment ago")
        if probed and down_since is None:
            return
        parts = urllib.parse.urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:  # a TCP connect, no HTTP request: nothing reaches the server's API or its logs
            socket.create_connection((parts.hostname or "", port), timeout=_PROBE_TIMEOUT_S).close()
        except OSError as exc:
            with self._lock:
                self._probed, self._down_since = True, time.monotonic()
            raise _down(self.base_url, f"nothing accepts connections on {parts.hostname}:{port} ({exc})") from exc
        with self._lock:
            self._probed, self._down_since = True, None

    def check_ready(self) -> float:
        """Send one tiny real completion; return its latency in seconds or raise BackendUnavailableError."""
        t0 = time.perf_counter()
        llm = self._llm()
        try:
            llm.invoke([{"role": "user", "content": "Say OK."}], max_tokens=2, temperature=0)
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc) from exc
        return time.perf_counter() - t0

    def close(self) -> None:
        with self._lock:
            if self._sync_llm is not None:
                self._sync_llm.root_client.close()
                self._sync_llm = None
            self._async_llms.clear()

    # --- internals --------------------------------------------------------------------------------------------------
    def _temperature(self, attempt: int) -> float:
        t = self.settings.temperature
        return t if attempt == 0 else max(t, _RETRY_TEMPERATURE)

    def _call_kwargs(self, job: RefineJob, temperature: float | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"response_format": response_format(job)}
        if temperature is not None:
            kwargs["temperature"] = temperature
        return kwargs

    def _make_llm(self, *, async_client: Any = None) -> Any:
        openai = self._openai
        return self._lc.ChatOpenAI(
            base_url=self.base_url,
            api_key=self.settings.api_key or "EMPTY",
            model=self._resolve_model(),
            timeout=self.settings.timeout_s,
            max_retries=self.settings.max_retries,
            temperature=self.settings.temperature,
            max_tokens=self.settings.max_new_tokens,
            use_responses_api=False,
            # Own HTTP clients: langchain-openai caches one per URL process-wide, and an async client must not
            # outlive the event loop that opened its connections.
            http_client=openai.DefaultHttpxClient(),
            http_async_client=async_client or openai.DefaultAsyncHttpxClient(),
        )

    def _llm(self) -> Any:
        with self._lock:
            if self._sync_llm is None:
                self._sync_llm = self._make_llm()
            return self._sync_llm

    async def _allm(self) -> Any:
        loop = asyncio.get_running_loop()
        llm = self._async_llms.get(loop)
        if llm is None:
            if self._model is None:
                await asyncio.to_thread(self._resolve_model)
            llm = self._make_llm()
            self._async_llms[loop] = llm
        return llm

    def _resolve_model(self) -> str:
        """The served model name: the configured one, else the first model the server lists."""
        if self._model:
            return self._model
        url = f"{self.base_url}/models"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.settings.api_key or 'EMPTY'}"})
        try:
            with urllib.request.urlopen(req, timeout=min(self.settings.timeout_s, 30.0)) as resp:
                data = json.loads(resp.read())
            self._model = str(data["data"][0]["id"])
        except urllib.error.HTTPError as exc:
            raise BackendError(
                f"the server at {self.base_url} refused to list its models (HTTP {exc.code}).",
                fix="set refiner.vllm.model to the served model name, and refiner.vllm.api_key if the server "
                "needs one.",
            ) from exc
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise _down(self.base_url, f"listing models failed ({exc})") from exc
        self.model_id = self._model
        return self._model

    def _enter(self) -> None:
        with self._lock:
            self.stats["requests"] += 1
            self.stats["in_flight"] += 1
            self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], self.stats["in_flight"])

    def _leave(self) -> None:
        with self._lock:
            self.stats["in_flight"] -= 1

    def _map_error(self, exc: Exception) -> Exception:
        """Turn an OpenAI/LangChain exception (after the client's own retries) into a CaptionAgentError."""
        openai = self._openai
        url, retries = self.base_url, self.settings.max_retries
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, openai.LengthFinishReasonError):
            return ModelOutputError(f"answer cut off at max_new_tokens={self.settings.max_new_tokens} (not valid JSON)")
        if isinstance(exc, openai.APITimeoutError):
            return _down(url, f"no answer within {self.settings.timeout_s:g} s, {retries} retries")
        if isinstance(exc, openai.APIConnectionError):
            with self._lock:
                self._down_since = time.monotonic()
            return _down(url, f"cannot connect ({retries} retries)")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = str(getattr(exc, "message", exc))[:300]
            if status >= 500 or status in (408, 409, 429):
                err = BackendError(
                    f"the vLLM server at {url} answered HTTP {status} after {retries} retries: {detail}",
                    fix="check the server log; retry the failed items.",
                )
                err.retryable = True  # type: ignore[attr-defined]
                return err
            if status in (401, 403):
                fix = "set refiner.vllm.api_key (CAPTION_AGENT_REFINER__VLLM__API_KEY) to the server's --api-key."
            elif status == 404:
                fix = f"set refiner.vllm.model to a name the server lists at {url}/models."
            else:
                fix = "check refiner.vllm.model, max_new_tokens and the server's --max-model-len."
            err = BackendError(f"the vLLM server at {url} rejected the request (HTTP {status}): {detail}", fix=fix)
            err.retryable = False  # type: ignore[attr-defined]
            return err
        return exc


def validate_answer(raw: str, job: RefineJob) -> RefinedCaption:
    """Strictly validate a constrained answer (JSON matching the schema), then apply the shared post-processing."""
    text = (raw or "").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ModelOutputError(f"answer is not valid JSON: {text[:120]!r}") from None
    try:
        RefinedCaption.model_validate(data, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ModelOutputError(
            f"answer breaks the schema at {'.'.join(map(str, first['loc'])) or 'root'}: {first['msg']}"
        ) from None
    if not isinstance(data, dict) or set(data) - {"caption", "facts_used"}:
        raise ModelOutputError(f"answer breaks the schema (unexpected keys): {text[:120]!r}")
    return parse_refined(json.dumps(data), job)


def _finish(result: RefinedCaption, notes: list[str]) -> RefinedCaption:
    return result.model_copy(update={"notes": notes[-8:]}) if notes else result


def _give_up(notes: list[str]) -> ModelOutputError:
    err = ModelOutputError(f"vLLM refiner gave no usable answer in {len(notes)} attempt(s): {'; '.join(notes)}")
    err.retryable = False  # type: ignore[attr-defined]
    err.notes = notes  # type: ignore[attr-defined]
    return err


def _content(reply: Any) -> str:
    content = reply.content
    if isinstance(content, list):  # content blocks: keep the text ones
        content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def _down(url: str, why: str) -> RefinerUnavailableError:
    err = unavailable(url, why, hint=START_HINT)
    return RefinerUnavailableError(err.reason, fix=err.fix)
