"""/docs: Swagger UI served from the service itself (the `swagger-ui-bundle` package's assets), so the API page
works offline and its Content-Security-Policy names no CDN and no inline script."""

# No `from __future__ import annotations`: FastAPI reads the route signatures of the closures below.

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from caption_agent.service.errors import NotFoundError, NotReadyError

if TYPE_CHECKING:  # fastapi loads only when an app is built
    from fastapi import FastAPI

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Swagger UI sets style attributes and injects <style> elements: only styles are allowed inline, never scripts.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_FIX = "install the service extra (`pip install 'caption-agent[serve]'`), which brings swagger-ui-bundle."


@lru_cache(maxsize=len(ASSETS))
def asset(name: str) -> bytes:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        raise NotReadyError("the API page's assets (swagger-ui-bundle) are not installed.", fix=_FIX) from None
    return bytes((swagger_ui_path / name).read_bytes())


def add_docs_page(app: "FastAPI") -> None:
    from fastapi.responses import HTMLResponse, Response

    from caption_agent.service.review import render

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        html = render("docs.html", title=f"{app.title} - API", spec=app.openapi_url or "/openapi.json")
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP})

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFoundError(f"no asset {name!r}.", fix="the API page's assets are: " + ", ".join(ASSETS) + ".")
        return Response(
            asset(name),
            media_type=ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400", "Content-Security-Policy": CSP},
        )
