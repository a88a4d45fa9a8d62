"""The routers' dependencies: the service state of the app serving the request, and the API key checks."""

# No `from __future__ import annotations`: FastAPI reads these signatures.

from typing import Annotated

from fastapi import Depends, Request

from caption_agent.service.security import refuse_key_in_url
from caption_agent.service.state import ServiceState


def service_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(service_state)]


def api_key(request: Request, state: State) -> None:
    """The JSON API's key check: the key only from headers (the review page's cookie is for /review)."""
    refuse_key_in_url(request.query_params.keys())
    state.keys.check(request.headers)


def review_key(request: Request, state: State) -> None:
    """The review desk's key check: a header, or the cookie /review/login sets."""
    state.keys.check(request.headers, request.cookies)
