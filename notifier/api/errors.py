"""The error answers of the API, as the OpenAPI document declares them.

Every error is JSON with a ``detail`` sentence; a 422 also lists each bad
field (``account.phone``) in ``errors``. Routes declare the codes they may
answer with ``responses=error_responses(404, 409)``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, StatementError

from notifier.events.schema import FieldError

__all__ = ["KEYED", "ErrorOut", "InvalidOut", "database_down", "error_responses", "unstorable"]

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    detail: str


class InvalidOut(BaseModel):
    detail: str
    errors: list[FieldError] = Field(default_factory=list)
    """Each bad field, as ``account.phone``, with what is wrong with it."""


_WHY = {
    400: "the body cannot be read (not UTF-8, or not the declared form)",
    401: "missing, unknown, revoked or expired key",
    403: "the key's role may not do this",
    404: "no such thing (or not yours to see)",
    409: "the thing is not in a state that allows this",
    413: "the request body is over NOTIFIER_MAX_BODY_BYTES",
    422: "invalid input: `errors` names each bad field",
    429: "the key is over its rate (NOTIFIER_API_RATE_LIMITS); wait `Retry-After` seconds",
    503: "a backend this needs does not answer",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "whole seconds to wait before the next request",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers ``codes``, for a route's or a router's ``responses``."""
    entries: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "model": InvalidOut if code == 422 else ErrorOut,
            "description": _WHY[code],
        }
        if code == 429:
            entry["headers"] = _RETRY_AFTER
        entries[code] = entry
    return entries


async def unstorable(_: Request, exc: Exception) -> JSONResponse:
    """422, not 500, for a value in the request that the database cannot take.

    An id past 64 bits (SQLite: ``OverflowError``) or past 32 (PostgreSQL:
    "integer out of range"), a time whose UTC falls past year 9999, a NUL in
    a query string (PostgreSQL text cannot hold it): validation let them
    through, the database refused them. A database that does not answer is
    a 503 (:func:`database_down`); other database errors stay 500s.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        return database_down(exc)
    cause = exc.orig if isinstance(exc, StatementError) else exc
    if not isinstance(exc, DataError) and not isinstance(cause, OverflowError):
        raise exc
    # Logged as a warning: a value the API should have refused before the database did.
    log.warning("refused a value the database cannot take (%s)", type(cause).__name__)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={
            "detail": "invalid request",
            "errors": [
                {
                    "field": "(request)",
                    "message": "a number, date or text is outside what can be stored",
                }
            ],
        },
    )


def database_down(exc: Exception) -> JSONResponse:
    """503, not 500, while the database does not answer (restarting, failing over).

    Nothing was stored: an event the producer posts again once the database
    is back is accepted then (the same ``event_id`` is never stored twice).
    """
    log.warning("the database does not answer (%s): answered 503", type(exc).__name__)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": "the database does not answer; try again shortly"},
        headers={"Retry-After": "5"},
    )


KEYED = error_responses(400, 401, 403, 413, 422, 429)
"""What any route behind an API key may answer (413: any request may carry a body)."""
