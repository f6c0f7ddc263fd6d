"""Producer routes: ``POST /v1/events`` and ``POST /v1/events/batch``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session

from notifier.accounts import service as accounts
from notifier.api.deps import RuntimeDep, require
from notifier.api.errors import KEYED, error_responses
from notifier.auth.models import ApiKey
from notifier.billing import service as billing
from notifier.escalation import ladder
from notifier.events import service as events
from notifier.events.schema import MAX_ERRORS, EventIn, FieldError, field_errors, parse_events

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"], responses=KEYED)
Producer = Annotated[ApiKey, Depends(require("producer"))]
MAX_BATCH = 1000


class EventAnswer(BaseModel):
    event_id: str | None
    status: Literal["accepted", "duplicate", "invalid"]
    errors: list[FieldError] = []


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(
        max_length=MAX_BATCH, description="up to 1,000 events, each as for POST /v1/events"
    )


class BatchAnswer(BaseModel):
    accepted: int
    duplicate: int
    invalid: int
    results: list[EventAnswer]


def _enqueue(rt: RuntimeDep, created: dict[str, int | None]) -> None:
    """Hand the events just committed to the workers."""
    new = [pk for pk in created.values() if pk is not None]
    if new:
        rt.dispatcher.process_events(new)


def _refused(session: Session, caller: ApiKey, items: dict[int, EventIn]) -> dict[int, FieldError]:
    """What the ledger refuses, by position: 422 naming the field, nothing stored.

    Another producer's bill (``bill.bill_no``) or contact data of an account another
    producer keeps (the first account field sent); confirmations the ladder cannot take
    (``account.suspended`` for an account that is not ``suspension_due``).
    """
    if not items:
        return {}
    refused: dict[int, FieldError] = {}
    bill_owner = billing.owners(session, {e.bill.bill_no for e in items.values() if e.bill})
    account_owner = accounts.owners(session, {e.account.account_no for e in items.values()})
    for i, e in items.items():
        owner = bill_owner.get(e.bill.bill_no) if e.bill else None
        if owner is not None and owner != caller.id:
            refused[i] = FieldError(field="bill.bill_no", message=FOREIGN_BILL)
            continue
        owner = account_owner.get(e.account.account_no)
        if owner is not None and owner != caller.id and (sent := list(e.account.known_fields())):
            refused[i] = FieldError(field=f"account.{sent[0]}", message=FOREIGN_CONTACT)
            continue
        if e.type in ladder.CONFIRMATIONS and (
            why := ladder.refusal(session, e.type, e.account.account_no)
        ):
            refused[i] = FieldError(field="account.account_no", message=why)
    return refused


FOREIGN_BILL = "this bill belongs to another producer"
FOREIGN_CONTACT = (
    "this account's contact data is kept by the producer that created it: send account_no alone"
)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"description": "a duplicate of an event already accepted"}},
)
def post_event(event: EventIn, rt: RuntimeDep, caller: Producer, response: Response) -> EventAnswer:
    """Accept one event; it is committed before the answer."""
    # The owner checks and the insert in one transaction: one round of BEGIN and COMMIT.
    with rt.db.session() as session:
        if refused := _refused(session, caller, {0: event}):
            raise RequestValidationError(
                [{"loc": ("body", *e.field.split(".")), "msg": e.message, "type": "value_error"}
                 for e in refused.values()]
            )  # fmt: skip
        raw = event.model_dump(mode="json", exclude_unset=True)
        created = events.accept(session, [(event, raw)], producer_key_id=caller.id)
    _enqueue(rt, created)
    if created[event.event_id] is None:
        response.status_code = status.HTTP_200_OK
        return EventAnswer(event_id=event.event_id, status="duplicate")
    return EventAnswer(event_id=event.event_id, status="accepted")


@router.post("/batch")
def post_batch(batch: BatchIn, rt: RuntimeDep, caller: Producer) -> BatchAnswer:
    """Accept up to 1,000 events, answering per item; invalid items store nothing."""
    results: list[EventAnswer] = []
    valid: list[tuple[EventIn, dict[str, Any]]] = []
    seen: set[str] = set()
    parsed = parse_events(batch.events)
    reported = 0
    # The owner checks and the insert in one transaction: one round of BEGIN and COMMIT.
    with rt.db.session() as session:
        refused = _refused(
            session, caller, {i: e for i, e in enumerate(parsed) if isinstance(e, EventIn)}
        )
        for index, raw in enumerate(batch.events):
            event = parsed[index]
            if isinstance(event, ValidationError) or index in refused:
                errors = (
                    [FieldError(field=f"events[{index}].{e.field}", message=e.message)
                     for e in field_errors(event)]
                    if isinstance(event, ValidationError)
                    else [FieldError(field=f"events[{index}].{refused[index].field}",
                                     message=refused[index].message)]
                )  # fmt: skip
                if reported >= MAX_ERRORS:
                    # The request's budget is spent: each further bad item says so in one line.
                    errors = [
                        FieldError(
                            field=f"events[{index}]",
                            message=f"invalid; details left out past {MAX_ERRORS} errors a request",
                        )
                    ]
                else:
                    errors = errors[: MAX_ERRORS - reported]
                    reported += len(errors)
                event_id = raw.get("event_id")
                # Echoed back as it came; a lone surrogate (not text) escaped, so the answer encodes.
                if isinstance(event_id, str):
                    event_id = event_id.encode("utf-8", "backslashreplace").decode()
                else:
                    event_id = None
                results.append(EventAnswer(event_id=event_id, status="invalid", errors=errors))
                continue
            if event.event_id in seen:
                results.append(EventAnswer(event_id=event.event_id, status="duplicate"))
                continue
            seen.add(event.event_id)
            valid.append((event, raw))
            results.append(EventAnswer(event_id=event.event_id, status="accepted"))
        created = events.accept(session, valid, producer_key_id=caller.id)
    _enqueue(rt, created)
    for answer in results:
        if answer.status == "accepted" and created.get(answer.event_id or "") is None:
            answer.status = "duplicate"
    counts = {
        kind: sum(r.status == kind for r in results)
        for kind in ("accepted", "duplicate", "invalid")
    }
    return BatchAnswer(**counts, results=results)


class EventState(BaseModel):
    event_id: str
    type: str
    status: str
    received_at: str
    processed_at: str | None
    outcome: str | None


@router.get("/{event_id}", responses=error_responses(404))
def get_event(event_id: str, rt: RuntimeDep, caller: Producer) -> EventState:
    """Where an accepted event stands; a producer sees only its own events."""
    own = caller.id if caller.role == "producer" else None
    with rt.db.session() as session:
        event = events.get_by_event_id(session, event_id, producer_key_id=own)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r}")
    return EventState(
        event_id=event.event_id,
        type=event.type,
        status=event.status,
        received_at=event.received_at.isoformat(),
        processed_at=event.processed_at.isoformat() if event.processed_at else None,
        outcome=event.outcome,
    )
