"""Headers every answer carries, pages and API alike: nothing personal kept in a cache.

Pages and JSON answers name customers, phones, bills and cases: ``Cache-Control:
no-store`` keeps them out of the browser's cache, a shared proxy's and the back-button
history a person at the next desk could open. The vendored assets under ``/static``
carry nothing personal and may be cached. Deployed (behind TLS), every answer also
says ``Strict-Transport-Security``, so a browser that has seen the site once never
speaks plain HTTP to it again.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HSTS", "NO_STORE", "PrivateAnswers"]

NO_STORE = "no-store"
HSTS = "max-age=31536000; includeSubDomains"
_CACHEABLE = ("/static/",)


class PrivateAnswers:
    """ASGI middleware: ``Cache-Control: no-store`` on every HTTP answer but ``/static``, and with
    ``hsts``, ``Strict-Transport-Security`` on all."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope["path"]).startswith(_CACHEABLE)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if not cacheable:
                    headers["Cache-Control"] = NO_STORE
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
