"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from assets this app serves itself.

Both pages used to load their scripts from a CDN, so without internet they were blank.
The ``fastapi-offline`` package ships Swagger UI's and ReDoc's builds; ``mount`` serves
them at ``/static/apidocs`` and the pages reference nothing else, so they work offline
and under a Content-Security-Policy naming this site alone. Swagger UI is started by
``/static/swagger-init.js`` rather than FastAPI's inline script, which that policy
would block; ReDoc starts itself from its ``<redoc spec-url>`` element.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "CSP", "mount", "router"]

ASSETS_URL = "/static/apidocs"
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
CSP = (
    # Both UIs set element styles from their scripts (ReDoc through styled-components,
    # which writes <style> elements): inline styles are allowed here, inline scripts not.
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)
"""The docs pages' own policy; the other pages keep the stricter one of ``notifier.web``."""

router = APIRouter(include_in_schema=False)

_SWAGGER = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="icon" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{root}/static/swagger-init.js"></script>
</body>
</html>
"""

_REDOC = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<redoc spec-url="{openapi}"></redoc>
<script src="{assets}/redoc.standalone.js"></script>
</body>
</html>
"""


def mount(app: FastAPI) -> None:
    """Serve the UIs' assets and add the two pages; before ``/static`` is mounted."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="apidocs")
    app.include_router(router)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """The API's OpenAPI document in Swagger UI."""
    return _page(request, _SWAGGER)


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """The API's OpenAPI document in ReDoc."""
    return _page(request, _REDOC)


def _page(request: Request, template: str) -> HTMLResponse:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    html = template.format(
        title=escape(request.app.title),
        root=escape(root),
        assets=escape(root + ASSETS_URL),
        openapi=escape(root + (request.app.openapi_url or "/openapi.json")),
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": CSP})
