"""The web pages people sign in to: ops staff, agents, supervisors, admins.

``install(app)`` (called by :func:`notifier.app.create_app`) adds the page routers in
``PAGES``, the vendored static files at ``/static`` and the handlers that
turn :class:`~notifier.web.deps.SignInRequired` into a redirect to the
sign-in page and :class:`~notifier.web.deps.PageForbidden` into the 403
page. Every response outside the JSON API (``/v1/…``, ``/openapi.json``) carries
the security headers in ``SECURITY_HEADERS``: scripts, styles and images come
from this site only, and no other site may frame a page.

A new page module adds its router to ``PAGES``; how to write one is in
:mod:`notifier.web.deps`. A way in beside ``api``: it may import
``api.deps`` (the dependencies both share), the flows and every domain;
``notifier.app`` mounts it, and nothing below imports it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.web import agent, dashboard, holds, ladder, ops, router
from notifier.web.deps import PageForbidden, SignInRequired, redirect, render, sign_in_url

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


async def _to_sign_in(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return redirect(sign_in_url(exc.next_path))


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbidden)
    return render(request, "forbidden.html", status_code=403, reason=exc.reason)


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
