"""A producer's callback URL, and the callbacks owed or sent to it.

``PUT /v1/producer/callback`` registers the caller's URL and answers the
signing secret once; ``GET`` shows the URL, ``DELETE`` forgets it.
``GET /v1/producer/callbacks`` lists callbacks with their attempts: a
producer key sees its own, ops staff see everyone's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from notifier.api.deps import RuntimeDep, SessionDep, require
from notifier.api.errors import KEYED, error_responses
from notifier.audit import service as audit
from notifier.auth.models import ApiKey
from notifier.privacy.text import StorableStr
from notifier.webhooks import service as webhooks
from notifier.webhooks.models import ProducerCallback, ProducerEndpoint

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/producer",
    tags=["producer callbacks"],
    responses={**KEYED, **error_responses(404)},
)
Producer = Annotated[ApiKey, Depends(require("producer"))]
Reader = Annotated[ApiKey, Depends(require("producer", "ops", "supervisor"))]


class CallbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: StorableStr = Field(
        max_length=2000, description="https:// (http:// only in the embedded mode)"
    )
    rotate_secret: bool = False
    """Make a new signing secret for a URL already registered (answered once)."""


class EndpointOut(BaseModel):
    url: str
    secret: str | None = None
    """The signing secret: only in the answer that made it; store it then."""
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: ProducerEndpoint, secret: str | None = None) -> EndpointOut:
        return cls(
            url=endpoint.url,
            secret=secret,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class CallbackOut(BaseModel):
    id: int
    key_id: int
    type: str
    status: str
    attempts: int
    next_at: datetime | None
    """When a pending callback is next POSTed."""
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    body: dict[str, Any]

    @classmethod
    def of(cls, row: ProducerCallback) -> CallbackOut:
        assert row.id is not None
        return cls(
            id=row.id,
            key_id=row.key_id,
            type=row.type,
            status=row.status,
            attempts=row.attempts,
            next_at=row.next_at if row.status == "pending" else None,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=row.sent_at,
            body={"id": row.id, **row.body},
        )


class CallbackPage(BaseModel):
    callbacks: list[CallbackOut]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; null on the last one."""


def _actor(key: ApiKey) -> str:
    return audit.actor_name("key", key.id, key.name)


@router.get("/callback")
def get_callback(session: SessionDep, caller: Producer) -> EndpointOut:
    """The caller's callback URL (never the secret)."""
    assert caller.id is not None
    endpoint = webhooks.get_endpoint(session, caller.id)
    if endpoint is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no callback URL registered")
    return EndpointOut.of(endpoint)


@router.put(
    "/callback",
    responses={201: {"model": EndpointOut, "description": "registered; the secret is shown"}},
)
def put_callback(
    rt: RuntimeDep, session: SessionDep, caller: Producer, body: CallbackIn, response: Response
) -> EndpointOut:
    """Register (or change) the caller's callback URL; a new secret is answered once."""
    assert caller.id is not None
    new = webhooks.get_endpoint(session, caller.id) is None
    try:
        endpoint, secret = webhooks.register(
            session,
            caller.id,
            body.url,
            deployed=rt.settings.mode != "embedded",
            allow_private=rt.settings.callback_allow_private,
            now=rt.clock(),
            rotate_secret=body.rotate_secret,
        )
    except webhooks.InvalidUrl as exc:
        # The app's handler answers it like any bad body: 422 naming the field.
        raise RequestValidationError(
            [{"loc": ("body", "url"), "msg": str(exc), "type": "value_error"}]
        ) from None
    audit.record(
        session,
        actor=_actor(caller),
        action="callback.register",
        target=f"key {caller.id}",
        detail={"url": endpoint.url, "new_secret": secret is not None},
    )
    if new:
        response.status_code = status.HTTP_201_CREATED
    return EndpointOut.of(endpoint, secret)


@router.delete("/callback", status_code=status.HTTP_204_NO_CONTENT)
def delete_callback(session: SessionDep, caller: Producer) -> Response:
    """Stop callbacks to the caller; those still owed fail."""
    assert caller.id is not None
    if not webhooks.clear(session, caller.id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no callback URL registered")
    audit.record(session, actor=_actor(caller), action="callback.clear", target=f"key {caller.id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/callbacks")
def list_callbacks(
    session: SessionDep,
    caller: Reader,
    status: Literal["pending", "sent", "failed"] | None = None,
    key_id: Annotated[int | None, Query(description="ops only: one producer key's")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
) -> CallbackPage:
    """Callbacks newest first with their attempts: a producer's own; every producer's for ops."""
    if caller.role == "producer":
        key_id = caller.id  # its own only, whatever it asked
    rows = webhooks.list_callbacks(
        session,
        webhooks.CallbackFilter(key_id=key_id, status=status),
        before_id=int(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return CallbackPage(
        callbacks=[CallbackOut.of(row) for row in rows],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )
