"""The web pages people sign in to: ops staff, agents, supervisors, admins.

``install(app)`` (called by :func:`notifier.app.create_app`) adds the page routers in
``PAGES``, the vendored static files at ``/static`` and the handlers that
turn :class:`~notifier.web.deps.SignInRequired` into a redirect to the
sign-in page and :class:`~notifier.web.deps.PageForbidden` into the 403
page, and that answer a page's errors (404, 405, 409, 422, 500 …) with the
page's own HTML in its language (``templates/error.html``) while the API
(``/v1/…``, ``/openapi.json``, the docs) and a caller asking for JSON keep JSON. Every
response outside the JSON API (``/v1/…``, ``/openapi.json``) carries
the security headers in ``SECURITY_HEADERS``: scripts, styles and images come
from this site only, and no other site may frame a page.

A new page module adds its router to ``PAGES``; how to write one is in
:mod:`notifier.web.deps`. A way in beside ``api``: it may import
``api.deps`` (the dependencies both share), the flows and every domain;
``notifier.app`` mounts it, and nothing below imports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.web import agent, dashboard, deps, holds, ladder, ops, router
from notifier.web.deps import (
    PageForbidden,
    SignInRequired,
    local_path,
    redirect,
    render,
    sign_in_url,
)

__all__ = ["PAGES", "SECURITY_HEADERS", "install"]

PAGES = (router, ops, dashboard, agent, holds, ladder)
"""Modules with a ``router`` of pages."""
STATIC_DIR = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def install(app: FastAPI) -> None:
    """Add the pages, ``/static`` and their error handling and headers to ``app``."""
    for module in PAGES:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_exception_handler(PageForbidden, _forbidden)
    # The JSON API goes without; /docs and /redoc (notifier.web.apidocs) get these headers
    # too, with the looser Content-Security-Policy of their own that setdefault keeps.
    api = ("/v1/", *(url for url in (app.openapi_url,) if url))
    app.add_middleware(_SecurityHeaders, skip=api)
    # Errors there stay JSON, as the docs pages' scripts, API callers, Prometheus and
    # health probes read them.
    pages = _ErrorPages(
        api=(*api, "/docs", "/redoc", "/metrics", "/healthz", "/readyz"),
        http=app.exception_handlers[StarletteHTTPException],
        invalid=app.exception_handlers[RequestValidationError],
    )
    app.add_exception_handler(StarletteHTTPException, pages.http_error)
    app.add_exception_handler(RequestValidationError, pages.invalid)
    app.add_exception_handler(Exception, pages.server_error)


async def _to_sign_in(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return redirect(sign_in_url(exc.next_path))


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbidden)
    return render(request, "forbidden.html", status_code=403, reason=exc.reason)


Handler = Callable[[Request, Any], Response | Awaitable[Response]]


async def _answer(handler: Handler, request: Request, exc: Exception) -> Response:
    answer = handler(request, exc)
    return await answer if inspect.isawaitable(answer) else answer


class _ErrorPages:
    """A page's error as the page's own HTML; the API's (``api`` prefixes) by its JSON handlers.

    A page is any path outside ``api`` asked for by a browser: one whose ``Accept``
    does not prefer JSON to HTML (curl's ``*/*`` gets the page too).
    """

    def __init__(self, *, api: tuple[str, ...], http: Handler, invalid: Handler) -> None:
        self.api = api
        self.json_http = http
        self.json_invalid = invalid

    def wants_page(self, request: Request) -> bool:
        if request.url.path.startswith(self.api):
            return False
        accept = request.headers.get("accept", "")
        return "text/html" in accept or "json" not in accept

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not self.wants_page(request):
            return await _answer(self.json_http, request, exc)
        # The route's own reason ("this delivery already reached the customer"), not the
        # status's stock phrase, which the page's heading already says in the page's language.
        stock = exc.detail == HTTPStatus(exc.status_code).phrase
        answer = _error_page(request, exc.status_code, detail="" if stock else str(exc.detail))
        answer.headers.update(exc.headers or {})  # 405's Allow, say
        return answer

    async def invalid(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not self.wants_page(request):
            return await _answer(self.json_invalid, request, exc)
        fields = sorted({str(e["loc"][-1]) for e in exc.errors() if e.get("loc")})
        return _error_page(request, status.HTTP_422_UNPROCESSABLE_CONTENT, fields=fields)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Starlette logs the exception itself after this answer; nothing of it is shown.
        if not self.wants_page(request):
            return PlainTextResponse("Internal Server Error", status_code=500)
        try:
            return _error_page(request, status.HTTP_500_INTERNAL_SERVER_ERROR)
        except Exception:  # the page itself failing must not hide the first error
            return PlainTextResponse("Internal Server Error", status_code=500)


def _error_page(
    request: Request, code: int, *, fields: Sequence[str] = (), detail: str = ""
) -> Response:
    if not hasattr(request.state, "web"):
        # No route ran (an unknown path): find the signed-in user ourselves, for the header.
        try:
            deps._signed_in(request, request.app.state.runtime)
        except Exception:  # a database that is down: the page without the user's header
            request.state.web = None
    referer = urlsplit(request.headers.get("referer", ""))
    same_site = referer.netloc == request.url.netloc
    back = local_path(referer.path + (f"?{referer.query}" if referer.query else ""))
    return render(
        request,
        "error.html",
        status_code=code,
        code=code,
        fields=fields,
        detail=detail,
        back=back if same_site and back != request.url.path else None,
    )


class _SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response but those under the ``skip`` prefixes."""

    def __init__(self, app: ASGIApp, *, skip: tuple[str, ...]) -> None:
        self.app = app
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(self.skip):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
