"""Shared client plumbing for backends that talk to an OpenAI-compatible server (vLLM drafter; the refiner can too).

Retries with backoff are the OpenAI client's own (``max_retries``: 0.5 s doubling to 8 s, jittered, on connection
errors, timeouts, 408/409/429 and 5xx); this module maps what is left after them onto our errors, bounds
concurrency, and runs a coroutine from sync code.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.parse
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from caption_agent.errors import BackendError, BackendUnavailableError, CaptionAgentError

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 429})


def normalize_url(url: str) -> str:
    """Accept ``http://host:port`` as well as ``http://host:port/v1``."""
    url = url.strip().rstrip("/")
    if not urllib.parse.urlsplit(url).path:
        url += "/v1"
    return url


def unavailable(url: str, why: str, hint: str) -> BackendUnavailableError:
    err = BackendUnavailableError(
        f"the server at {url} is unreachable: {why}.", fix=f"{hint}; the failed items can be retried."
    )
    err.retryable = True  # type: ignore[attr-defined]
    return err


def map_openai_error(
    exc: BaseException, openai: Any, url: str, *, retries: int, timeout_s: float, hint: str, on_rejected: str
) -> BaseException:
    """Turn an ``openai`` exception (after the client's retries) into a CaptionAgentError saying what to do.

    ``hint`` tells how to start/reach the server; ``on_rejected`` is the fix for a 4xx other than auth/404.
    """
    if isinstance(exc, CaptionAgentError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return unavailable(url, f"no answer within {timeout_s:g} s, {retries} retries", hint)
    if isinstance(exc, openai.APIConnectionError):
        return unavailable(url, f"cannot connect ({retries} retries)", hint)
    if isinstance(exc, openai.APIStatusError):
        status, detail = exc.status_code, str(getattr(exc, "message", exc))[:300]
        if status >= 500 or status in RETRYABLE_STATUS:
            err = BackendError(
                f"the server at {url} answered HTTP {status} after {retries} retries: {detail}",
                fix="check the server log; retry the failed items.",
            )
            err.retryable = True  # type: ignore[attr-defined]
            return err
        if status in (401, 403):
            fix = "set api_key to the server's --api-key."
        elif status == 404:
            fix = f"set model to a name the server lists at {url}/models."
        else:
            fix = on_rejected
        err = BackendError(f"the server at {url} rejected the request (HTTP {status}): {detail}", fix=fix)
        err.retryable = False  # type: ignore[attr-defined]
        return err
    return exc


async def gather_bounded(calls: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T | Exception]:
    """Await every call with at most ``limit`` in flight; a failure is returned in place, in input order."""
    gate = asyncio.Semaphore(max(1, limit))

    async def one(call: Callable[[], Awaitable[T]]) -> T | Exception:
        async with gate:
            try:
                return await call()
            except Exception as exc:  # noqa: BLE001 - recorded per item by the caller
                return exc

    return list(await asyncio.gather(*(one(c) for c in calls)))


def run_coroutine(coro: Awaitable[T]) -> T:
    """Run ``coro`` to completion from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def worker() -> None:  # a running loop cannot be re-entered: use a fresh one in a short-lived thread
        try:
            box["value"] = asyncio.run(coro)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=worker, name="caption-agent-async")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value
