"""Ops pages: the delivery log, one notification's story, retry/cancel, audit, and the
customers no notice reached (with their export). The dashboard is in :mod:`notifier.web.dashboard`.

The question these pages answer many times a day is "did this customer get
the notice, when, on which channel, and what did the provider say?": the log
filters to an account in one step, and a notification's page shows every
delivery with its content, its timeline and the fallback path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from channels import CHANNEL_NAMES
from notifier.api.deps import RuntimeDep, SessionDep
from notifier.audit import service as audit
from notifier.deliveries import service as deliveries
from notifier.deliveries import stats
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.events.models import Event
from notifier.events.schema import EVENT_TYPES
from notifier.exports import tables as exports
from notifier.flows import ops_actions
from notifier.flows import unreachable as unreachable_flow
from notifier.privacy.masking import mask_account_no
from notifier.runtime import Runtime
from notifier.users.service import actor_of
from notifier.web.deps import OpsUser, csrf_protect, redirect, render

__all__ = ["router"]

router = APIRouter(prefix="/ops", include_in_schema=False)
PAGE_SIZE = 50
STATUSES = stats.STATUS_ORDER


@dataclass(frozen=True, slots=True)
class _OpenCircuit:
    provider: str
    since: datetime
    probe_at: datetime | None
    reason: str


def _open_circuits(rt: Runtime, session: Session) -> list[_OpenCircuit]:
    """The providers whose sends are held now, for the banner (the reason holds no secret)."""
    return [
        _OpenCircuit(
            provider=c.provider,
            since=datetime.fromtimestamp(c.opened_at, UTC),
            probe_at=datetime.fromtimestamp(c.probe_at, UTC) if c.probe_at else None,
            reason=c.reason,
        )
        for c in rt.circuits.states(session=session)
        if c.open and c.opened_at is not None
    ]


def _day(text: str, field: str, problems: list[str]) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(field)
        return None


@router.get("", response_class=HTMLResponse)
def delivery_log(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    q: Annotated[str, Query(max_length=128)] = "",
    status_: Annotated[str, Query(alias="status")] = "",
    channel: str = "",
    event_type: str = "",
    since: str = "",
    until: str = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """The delivery log, newest first: filters, free-text search, keyset paging."""
    problems: list[str] = []
    tz = rt.policy.tz
    first, last = _day(since, "since", problems), _day(until, "until", problems)
    filters = deliveries.DeliveryFilter(
        status=status_ if status_ in STATUSES else None,
        channel=channel if channel in CHANNEL_NAMES else None,
        event_type=event_type if event_type in EVENT_TYPES else None,
        since=datetime.combine(first, time(0), tzinfo=tz) if first else None,
        until=datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz) if last else None,
        search=q.strip() or None,
    )
    rows = deliveries.list_deliveries(session, filters, before_id=before, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    kept = {
        "q": q, "status": status_, "channel": channel, "event_type": event_type,
        "since": since, "until": until,
    }  # fmt: skip
    return render(
        request,
        "ops/log.html",
        circuits=_open_circuits(rt, session),
        rows=rows,
        filters=kept,
        older={**kept, "before": rows[-1].id} if more and rows else None,
        paged=before is not None,
        problems=problems,
        statuses=STATUSES,
        channels=CHANNEL_NAMES,
        event_types=EVENT_TYPES,
        tz=tz,
    )


@router.get("/deliveries/{delivery_id}")
def delivery(session: SessionDep, user: OpsUser, delivery_id: int) -> RedirectResponse:
    """A delivery is shown on its notification's page."""
    found = session.get(Delivery, delivery_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no delivery {delivery_id}")
    return redirect(f"/ops/notifications/{found.notification_id}#delivery-{delivery_id}")


@router.get("/notifications/{notification_id}", response_class=HTMLResponse)
def notification(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    notification_id: int,
    done: str = "",
) -> HTMLResponse:
    """One notification: every delivery with its content and timeline, and the fallback path."""
    found = session.get(Notification, notification_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no notification {notification_id}")
    event = session.get(Event, found.event_pk)
    rows = list(
        session.exec(
            select(Delivery)
            .where(Delivery.notification_id == notification_id)
            .order_by(col(Delivery.id))
        )
    )
    timelines = {d.id: deliveries.timeline(session, d.id) for d in rows if d.id is not None}
    return render(
        request,
        "ops/notification.html",
        notification=found,
        event=event,
        account_masked=mask_account_no(found.account_no),
        rows=rows,
        timelines=timelines,
        path_taken=_path_taken(rows),
        retry_refused={
            d.id: ops_actions.retry_refusal(d, timelines.get(d.id or 0, []), rows) for d in rows
        },
        cancellable=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED),
        done=done,
        tz=rt.policy.tz,
    )


def _path_taken(rows: list[Delivery]) -> list[list[Delivery]]:
    """Each first-planned delivery followed by the fallbacks that came after it."""
    by_id = {d.id: d for d in rows}
    chains: list[list[Delivery]] = []
    for d in rows:
        if d.fallback_of is None or d.fallback_of not in by_id:
            chains.append([d])
        else:
            for chain in chains:
                if chain[-1].id == d.fallback_of:
                    chain.append(d)
                    break
            else:
                chains.append([d])
    return chains


@router.get("/deliveries/{delivery_id}/email.html")
def email_html(session: SessionDep, user: OpsUser, delivery_id: int) -> Response:
    """An email's HTML as sent, in a sandbox: no script runs, nothing is fetched."""
    found = session.get(Delivery, delivery_id)
    html = found.content.get("html") if found is not None else None
    if not html:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"delivery {delivery_id} has no HTML")
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'"
        },
    )


@router.post("/deliveries/{delivery_id}/retry", dependencies=[Depends(csrf_protect)])
def retry(rt: RuntimeDep, user: OpsUser, delivery_id: int) -> Response:
    """Send a failed delivery's notice again, as a new delivery."""
    return _act(rt, delivery_id, ops_actions.retry, actor_of(user), "retried")


@router.post("/deliveries/{delivery_id}/cancel", dependencies=[Depends(csrf_protect)])
def cancel(rt: RuntimeDep, user: OpsUser, delivery_id: int) -> Response:
    """Cancel a delivery still waiting to go out."""
    return _act(rt, delivery_id, ops_actions.cancel, actor_of(user), "cancelled")


def _act(
    rt: RuntimeDep,
    delivery_id: int,
    action: Callable[..., Delivery],
    actor: str,
    done: str,
) -> Response:
    # The action runs in its own transaction (and enqueues after its commit):
    # no request session is open meanwhile.
    try:
        acted = action(rt, delivery_id, actor=actor)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ops_actions.ActionRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    anchor = f"#delivery-{acted.id}"
    return redirect(f"/ops/notifications/{acted.notification_id}?done={done}{anchor}")


@router.get("/audit", response_class=HTMLResponse)
def audit_trail(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    action: str = "",
    actor: str = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """Who did what: sign-ins, retries, cancellations, reassignments, key and user changes."""
    page = audit.list_entries(
        session, action=action or None, actor=actor or None, before=before, limit=PAGE_SIZE
    )
    return render(
        request,
        "ops/audit.html",
        page=page,
        filters={"action": action, "actor": actor},
        tz=rt.policy.tz,
    )


EXPORT_LIMIT = 10_000


@router.get("/unreachable", response_class=HTMLResponse)
def unreachable(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """Customers a notice reached nobody at: what is missing, so someone fixes the data."""
    rows = unreachable_flow.list_unreachable(rt, session, before_id=before, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render(
        request,
        "ops/unreachable.html",
        rows=rows,
        older=rows[-1].notification_id if more and rows else None,
        paged=before is not None,
        formats=exports.FORMATS,
        tz=rt.policy.tz,
    )


@router.get("/unreachable.{fmt}")
def unreachable_export(rt: RuntimeDep, session: SessionDep, user: OpsUser, fmt: str) -> Response:
    """The newest unreachable customers as a CSV, XLSX or ODS file (masked, as on the page)."""
    if fmt not in exports.FORMATS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {fmt} export; try csv, xlsx or ods")
    tz = rt.policy.tz
    rows = unreachable_flow.list_unreachable(rt, session, before_id=None, limit=EXPORT_LIMIT)
    headers, table = unreachable_flow.export_table(rows, tz=tz)
    today = rt.policy.business_date(rt.clock())
    audit.record(
        session,
        actor=actor_of(user),
        action="unreachable.export",
        target="unreachable customers",
        detail={"format": fmt, "rows": len(rows)},
    )
    body = exports.write_table(headers, table, fmt, sheet=f"unreachable {today.isoformat()}")
    return Response(
        body,
        media_type=exports.MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="unreachable-{today.isoformat()}.{fmt}"'
        },
    )
