"""Holds (dunning locks): place one on an account, a bill or an area, list them, release one.

The billing system (a producer key) holds an account or a bill (a dispute, a
payment plan); an area hold, a disaster's, is a supervisor's. Every hold
placed or released is an audit entry. A release answers at once: the notices
owed to the accounts it kept back are a worker's task, whose progress
``GET /v1/holds?...`` shows (``release``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from notifier.api.deps import RuntimeDep, SessionDep, require
from notifier.api.errors import KEYED, error_responses
from notifier.auth import keys
from notifier.auth.models import ApiKey
from notifier.escalation import holds
from notifier.escalation.holds import Hold
from notifier.privacy.text import FreeText, Note, PersonName

__all__ = ["HoldIn", "HoldOut", "router"]

router = APIRouter(prefix="/v1", tags=["holds"], responses={**KEYED, **error_responses(404)})

ProducerOrSupervisor = Annotated[ApiKey, Depends(require("producer", "supervisor"))]
Reader = Annotated[ApiKey, Depends(require("producer", "ops", "supervisor"))]
SUPERVISORS = frozenset({"supervisor", "admin"})
AccountNo = Annotated[str, Field(pattern=r"^\d{11}$")]


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["account", "bill", "area"]
    account_no: AccountNo | None = None
    bill_no: FreeText | None = Field(None, min_length=1, max_length=64)
    area: PersonName | None = Field(None, min_length=1, max_length=64)
    reason: Literal["dispute", "payment_plan", "medical", "disaster", "other"]
    starts_on: date | None = None
    """The first business date it applies; today (Asia/Taipei) if left out."""
    ends_on: date | None = None
    """The last business date it applies; null: until released."""
    note: Note | None = Field(None, max_length=2000)
    """Why: needed for reason ``other`` and for every area hold."""


class ReleaseOut(BaseModel):
    queued_at: datetime | None
    accounts: int
    """Accounts with a notice held and none sent since: those the release looks at."""
    checked: int
    notified: int
    """Accounts sent their one notice."""
    done_at: datetime | None


class HoldOut(BaseModel):
    id: int
    scope: str
    account_no: str | None
    bill_no: str | None
    area: str | None
    reason: str
    starts_on: date
    ends_on: date | None
    note: str | None
    created_by: str
    created_at: datetime
    released_at: datetime | None
    released_by: str | None
    active: bool
    """Whether it applies today."""
    release: ReleaseOut

    @classmethod
    def of(cls, hold: Hold, today: date) -> HoldOut:
        assert hold.id is not None
        return cls(
            id=hold.id, scope=hold.scope, account_no=hold.account_no, bill_no=hold.bill_no,
            area=hold.area, reason=hold.reason, starts_on=hold.starts_on, ends_on=hold.ends_on,
            note=hold.note, created_by=hold.created_by, created_at=hold.created_at,
            released_at=hold.released_at, released_by=hold.released_by,
            active=hold.applies_on(today),
            release=ReleaseOut(
                queued_at=hold.release_queued_at, accounts=hold.release_accounts,
                checked=hold.release_checked, notified=hold.release_notified,
                done_at=hold.release_done_at,
            ),
        )  # fmt: skip


def _invalid(exc: holds.InvalidHold) -> RequestValidationError:
    # The app's handler answers it like any bad body: 422 naming the field.
    return RequestValidationError(
        [{"loc": ("body", exc.field), "msg": exc.message, "type": "value_error"}]
    )


@router.post("/holds", status_code=status.HTTP_201_CREATED)
def create_hold(
    rt: RuntimeDep, session: SessionDep, key: ProducerOrSupervisor, body: HoldIn
) -> HoldOut:
    """Hold an account, a bill or an area out of dunning from ``starts_on`` to ``ends_on``."""
    today = rt.policy.business_date(rt.clock())
    try:
        hold = holds.create_hold(
            session, scope=body.scope, reason=body.reason, account_no=body.account_no,
            bill_no=body.bill_no, area=body.area, starts_on=body.starts_on or today,
            ends_on=body.ends_on, note=body.note, actor=keys.actor_of(key),
            supervisor=key.role in SUPERVISORS, today=today,
        )  # fmt: skip
    except holds.InvalidHold as exc:
        raise _invalid(exc) from None
    return HoldOut.of(hold, today)


@router.get("/holds")
def list_holds(
    rt: RuntimeDep,
    session: SessionDep,
    _: Reader,
    active: bool | None = None,
    scope: Literal["account", "bill", "area"] | None = None,
    account_no: Annotated[str | None, Query(pattern=r"^\d{11}$")] = None,
    area: Annotated[str | None, Query(max_length=64)] = None,
) -> list[HoldOut]:
    """Holds, newest first: ``active=true`` those applying today, ``account_no`` those on the
    account or one of its bills."""
    today = rt.policy.business_date(rt.clock())
    where = holds.HoldFilter(
        active_on=today if active else None, scope=scope, account_no=account_no, area=area
    )
    found = holds.list_holds(session, where)
    if active is False:
        found = [hold for hold in found if not hold.applies_on(today)]
    return [HoldOut.of(hold, today) for hold in found]


@router.delete("/holds/{hold_id}")
def release_hold(
    rt: RuntimeDep, session: SessionDep, key: ProducerOrSupervisor, hold_id: int
) -> HoldOut:
    """Release a hold now; the notices it kept back are owed at once (a worker sends them)."""
    hold = session.get(Hold, hold_id)
    if hold is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no hold {hold_id}")
    if hold.scope in holds.SUPERVISOR_SCOPES and key.role not in SUPERVISORS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"an {hold.scope} hold is released by a supervisor"
        )
    already = hold.released_at is not None
    hold = holds.release_hold(session, hold_id, actor=keys.actor_of(key), now=rt.clock())
    session.commit()  # the worker must find it released
    if not already:
        rt.dispatcher.release_hold(hold_id)
    return HoldOut.of(hold, rt.policy.business_date(rt.clock()))
