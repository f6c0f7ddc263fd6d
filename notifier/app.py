"""The HTTP process's wiring: the API's routers and the web pages on one FastAPI app.

``create_app(settings)`` builds it; ``notifier.app:app`` is the ASGI entry point
of deployed API processes (``notifier api`` runs uvicorn on it), built on first
use so that importing this module reads no settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import StatementError
from starlette.concurrency import run_in_threadpool

from notifier.api import (
    callbacks,
    deliveries,
    escalations,
    events,
    health,
    holds,
    ladder,
    metrics,
    mitake_callbacks,
    producer,
    service_records,
    templates,
)
from notifier.api.errors import unstorable
from notifier.api.headers import PrivateAnswers
from notifier.api.limits import BodySizeLimit
from notifier.events.schema import FieldError, capped, error_message, field_path
from notifier.flows.report_buffer import ReportBuffer
from notifier.observability.logs import AccessLog, configure_logging
from notifier.runtime import Runtime
from notifier.settings import Settings, get_settings
from notifier.web import apidocs
from notifier.web import install as install_web_pages

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the API for ``settings`` (the environment's by default)."""
    rt = runtime or Runtime(settings or get_settings())
    reports = ReportBuffer(rt)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        rt.renderer.check_all()
        reports.start()
        yield
        # After the server's last request: every report it answered is applied before exit.
        await run_in_threadpool(reports.stop)
        rt.close()

    app = FastAPI(
        title="notifier",
        summary="Customer notifications for an electric utility: SMS, voice, email, push, postcard.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc are served from local assets by notifier.web.apidocs instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = rt
    app.state.reports = reports
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(OverflowError, unstorable)
    app.add_exception_handler(StatementError, unstorable)
    # The routers are tried in this order for every request: the providers' callbacks (two
    # per SMS) and the producers' events come first, so they match without scanning the rest.
    for module in (
        callbacks, mitake_callbacks, events, health, deliveries, escalations, holds, ladder,
        service_records, producer, templates, metrics,
    ):  # fmt: skip
        app.include_router(module.router)
    apidocs.mount(app)  # before install_web_pages: its /static mount would take /static/apidocs
    install_web_pages(app)
    app.add_middleware(BodySizeLimit, max_bytes=rt.settings.max_body_bytes)
    app.add_middleware(PrivateAnswers, hsts=rt.settings.mode == "deployed")
    app.add_middleware(AccessLog)  # outermost: one line per request, no query string
    return app


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field as ``account.phone``, not as pydantic's ``loc`` lists."""
    assert isinstance(exc, RequestValidationError)
    errors = capped(
        [
            FieldError(
                field=field_path([part for part in error["loc"] if part != "body"]),
                message=error_message(error),
            )
            for error in exc.errors()
        ]
    )
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": "invalid request", "errors": [e.model_dump() for e in errors]},
    )


def __getattr__(name: str) -> FastAPI:
    """``app``: the application for the environment's settings, built once on first use."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = create_app()
    globals()["app"] = built
    return built
