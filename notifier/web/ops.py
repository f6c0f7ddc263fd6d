"""Ops pages: the delivery log (numbered pages, search by account, provider id, phone or
email, its CSV), one notification's story, retry/cancel/send now and the same in bulk
after a confirmation, audit, the customers no notice reached (with their
export), print batches (reprint one), sweep runs and the bus's dead letters. Codes are
shown as words of the page's language (:mod:`notifier.web.labels`). The dashboard is
in :mod:`notifier.web.dashboard`.

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

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from channels import CHANNEL_NAMES
from notifier.accounts import service as accounts
from notifier.api.deliveries import shown_text
from notifier.api.deps import RuntimeDep, SessionDep
from notifier.audit import service as audit
from notifier.deliveries import service as deliveries
from notifier.deliveries import stats
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.escalation.models import SweepRun
from notifier.events.models import Event
from notifier.events.schema import EVENT_TYPES
from notifier.exports import tables as exports
from notifier.flows import ops_actions
from notifier.flows import print_batches as print_batch_views
from notifier.flows import unreachable as unreachable_flow
from notifier.ingest import dlq
from notifier.policy import local_time
from notifier.privacy.masking import mask_account_no
from notifier.runtime import Runtime
from notifier.users.service import actor_of
from notifier.web import labels
from notifier.web.deps import (
    OpsUser,
    csrf_protect,
    local_path,
    redirect,
    render,
    templates,
)

__all__ = ["router"]

router = APIRouter(prefix="/ops", include_in_schema=False)
PAGE_SIZE = 50
STATUSES = stats.STATUS_ORDER
labels.install(templates)


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


@dataclass(frozen=True, slots=True)
class _LogQuery:
    """The log's filters as the URL holds them, and what they select."""

    kept: dict[str, str]
    filters: deliveries.DeliveryFilter
    problems: list[str]


def _log_query(
    rt: Runtime,
    session: Session,
    *,
    q: str,
    status_: str,
    channel: str,
    event_type: str,
    since: str,
    until: str,
) -> _LogQuery:
    problems: list[str] = []
    tz = rt.policy.tz
    first, last = _day(since, "since", problems), _day(until, "until", problems)
    text = q.strip()
    filters = deliveries.DeliveryFilter(
        status=status_ if status_ in STATUSES else None,
        channel=channel if channel in CHANNEL_NAMES else None,
        event_type=event_type if event_type in EVENT_TYPES else None,
        since=datetime.combine(first, time(0), tzinfo=tz) if first else None,
        until=datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz) if last else None,
        search=text or None,
        # A phone or an email is looked up by its keyed hash: no plain one is indexed.
        search_accounts=accounts.by_contact(
            session, text, lookup_key=rt.settings.resolved_lookup_key
        ) if text else (),
    )  # fmt: skip
    kept = {
        "q": q, "status": status_, "channel": channel, "event_type": event_type,
        "since": since, "until": until,
    }  # fmt: skip
    return _LogQuery(kept={k: v for k, v in kept.items() if v}, filters=filters, problems=problems)


def _page_count(total: int) -> int:
    """Pages of ``PAGE_SIZE`` rows for ``total`` rows; an empty list is one empty page."""
    return max(1, -(-total // PAGE_SIZE))


def page_links(page: int, pages: int) -> list[int | None]:
    """The page numbers the pager links: the first, the last, and two either side of
    ``page``; None where numbers are skipped."""
    shown = sorted({1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)})
    out: list[int | None] = []
    for n in shown:
        if out and n - (out[-1] or 0) > 1:
            out.append(None)
        out.append(n)
    return out


templates.globals["page_links"] = page_links


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
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    """The delivery log, newest first: filters kept in the URL, search by account, provider
    id, phone or email, numbered pages, a CSV of what is selected."""
    found = _log_query(
        rt, session, q=q, status_=status_, channel=channel, event_type=event_type,
        since=since, until=until,
    )  # fmt: skip
    total = deliveries.count_deliveries(session, found.filters)
    pages = _page_count(total)
    page = min(page, pages)
    rows = deliveries.list_deliveries(
        session, found.filters, before_id=None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render(
        request,
        "ops/log.html",
        circuits=_open_circuits(rt, session),
        rows=rows,
        filters=found.kept,
        total=total,
        page=page,
        pages=pages,
        problems=found.problems,
        statuses=STATUSES,
        channels=CHANNEL_NAMES,
        event_types=EVENT_TYPES,
        tz=rt.policy.tz,
    )


CSV_LIMIT = 50_000


@router.get("/deliveries.csv")
def delivery_log_csv(
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    q: Annotated[str, Query(max_length=128)] = "",
    status_: Annotated[str, Query(alias="status")] = "",
    channel: str = "",
    event_type: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    """The log as the same filters select it, as CSV: addresses and errors masked as on the
    page, times in the business time zone."""
    found = _log_query(
        rt, session, q=q, status_=status_, channel=channel, event_type=event_type,
        since=since, until=until,
    )  # fmt: skip
    tz = rt.policy.tz
    rows = deliveries.list_deliveries(session, found.filters, before_id=None, limit=CSV_LIMIT)
    headers = [
        f"created ({tz.key})", "account", "event", "channel", "status", "to", "provider",
        "provider id", "attempts", f"updated ({tz.key})", "last error", "delivery", "notification",
    ]  # fmt: skip
    table = [
        [
            local_time.shown(d.created_at, tz), d.account_no, d.event_type, d.channel, d.status,
            d.address_masked, d.provider or "", d.provider_id or "", d.attempts,
            local_time.shown(d.updated_at, tz), shown_text(d.last_error or ""), d.id,
            d.notification_id,
        ]
        for d in rows
    ]  # fmt: skip
    today = rt.policy.business_date(rt.clock())
    audit.record(
        session,
        actor=actor_of(user),
        action="log.export",
        target="delivery log",
        detail={"format": "csv", "rows": len(rows), **found.kept},
    )
    return Response(
        exports.write_table(headers, table, "csv"),
        media_type=exports.MEDIA_TYPES["csv"],
        headers={"Content-Disposition": f'attachment; filename="deliveries-{today}.csv"'},
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


@router.post("/deliveries/{delivery_id}/send-now", dependencies=[Depends(csrf_protect)])
def send_now(rt: RuntimeDep, user: OpsUser, delivery_id: int) -> Response:
    """Send a deferred delivery now: quiet hours no longer hold it."""
    return _act(rt, delivery_id, ops_actions.send_now, actor_of(user), "sent_now")


@router.post("/deliveries/{delivery_id}/reprint", dependencies=[Depends(csrf_protect)])
def reprint(rt: RuntimeDep, user: OpsUser, delivery_id: int) -> Response:
    """Queue a printed postcard again for the next print batch."""
    return _act(rt, delivery_id, ops_actions.reprint, actor_of(user), "reprinted")


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
    since: str = "",
    until: str = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """Who did what: sign-ins, retries, cancellations, reassignments, key and user changes;
    filtered by action, person and dates (in the business time zone)."""
    tz = rt.policy.tz
    problems: list[str] = []
    first, last = _day(since, "since", problems), _day(until, "until", problems)
    page = audit.list_entries(
        session,
        action=action or None,
        actor=actor or None,
        since=datetime.combine(first, time(0), tzinfo=tz) if first else None,
        until=datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz) if last else None,
        before=before,
        limit=PAGE_SIZE,
    )
    kept = {"action": action, "actor": actor, "since": since, "until": until}
    return render(
        request,
        "ops/audit.html",
        page=page,
        filters={k: v for k, v in kept.items() if v},
        actions=sorted(labels.GROUPS["action"]),
        problems=problems,
        paged=before is not None,
        tz=tz,
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


_BULK_MAX = 200


def _ids(form_ids: list[str]) -> list[int]:
    picked = [int(i) for i in form_ids if i.isdigit()][:_BULK_MAX]
    return list(dict.fromkeys(picked))


@router.post("/bulk", response_class=HTMLResponse, dependencies=[Depends(csrf_protect)])
def bulk_review(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    action: Annotated[str, Form()],
    ids: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies form defaults)
    back: Annotated[str, Form()] = "/ops",
) -> HTMLResponse:
    """The confirmation step of a bulk retry, cancel or send-now: what each ticked delivery
    would do; nothing changes until it is confirmed."""
    if action not in ops_actions.ACTIONS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"action: unknown {action!r}")
    picked = _ids(ids)
    rows = list(
        session.exec(
            select(Delivery).where(col(Delivery.id).in_(picked)).order_by(col(Delivery.id))
        )
    )
    refused = {d.id: ops_actions.refusal(d, action, session) for d in rows}
    return render(
        request,
        "ops/bulk.html",
        action=action,
        rows=rows,
        refused=refused,
        ready=[d for d in rows if refused[d.id] is None],
        result=None,
        back=local_path(back) or "/ops",
        tz=rt.policy.tz,
    )


@router.post("/bulk/confirm", response_class=HTMLResponse, dependencies=[Depends(csrf_protect)])
def bulk_confirm(
    request: Request,
    rt: RuntimeDep,
    user: OpsUser,
    action: Annotated[str, Form()],
    ids: Annotated[list[str], Form()] = [],  # noqa: B006
    back: Annotated[str, Form()] = "/ops",
) -> HTMLResponse:
    """Do the confirmed bulk action, each delivery in its own audited transaction."""
    if action not in ops_actions.ACTIONS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"action: unknown {action!r}")
    result = ops_actions.bulk(rt, action, _ids(ids), actor=actor_of(user))
    return render(
        request,
        "ops/bulk.html",
        action=action,
        rows=[],
        refused={},
        ready=[],
        result=result,
        back=local_path(back) or "/ops",
        tz=rt.policy.tz,
    )


@router.get("/print-batches", response_class=HTMLResponse)
def print_batches(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    """The postcard print batches, newest first: when, how many cards, how many came back."""
    total, batches = print_batch_views.batches(
        session, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    pages = _page_count(total)
    return render(
        request,
        "ops/print_batches.html",
        batches=batches,
        page=min(page, pages),
        pages=pages,
        total=total,
        tz=rt.policy.tz,
    )


@router.get("/print-batches/{batch_id}", response_class=HTMLResponse)
def print_batch(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    batch_id: Annotated[str, Path(max_length=128)],
    done: str = "",
) -> HTMLResponse:
    """One print batch's cards: to whom (masked), about what, and a reprint for each."""
    cards = print_batch_views.cards(session, batch_id)
    if not cards:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no print batch {batch_id}")
    return render(
        request,
        "ops/print_batch.html",
        batch_id=batch_id,
        cards=cards,
        done=done,
        tz=rt.policy.tz,
    )


@router.get("/sweeps", response_class=HTMLResponse)
def sweep_runs(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    """The escalation sweep's runs, newest first: the date, what opened, closed, stayed
    unassigned, and any error."""
    total = int(session.exec(select(sa.func.count()).select_from(SweepRun)).one())
    pages = _page_count(total)
    page = min(page, pages)
    runs = list(
        session.exec(
            select(SweepRun)
            .order_by(col(SweepRun.id).desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE)
        )
    )
    return render(
        request, "ops/sweeps.html", runs=runs, page=page, pages=pages, total=total,
        tz=rt.policy.tz,
    )  # fmt: skip


DLQ_SHOWN = 100


@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters(request: Request, rt: RuntimeDep, user: OpsUser) -> HTMLResponse:
    """The bus's dead-letter queue: events the consumer refused and why (bodies not shown:
    they hold personal data). Replaying or dropping is the CLI's (``notifier events dlq``)."""
    problem = ""
    total, letters = 0, list[dlq.DeadLetter]()
    try:
        total, letters = dlq.peek(rt.settings, limit=DLQ_SHOWN)
    except Exception as exc:  # the broker down is a fact to show, not a 500
        problem = type(exc).__name__
    return render(
        request,
        "ops/dead_letters.html",
        total=total,
        letters=[
            {
                "message_id": letter.message_id,
                "errors": [(e.field, shown_text(e.message)) for e in letter.errors],
                "at": _instant(letter.dead_lettered_at),
                "replays": letter.replays,
            }
            for letter in letters
        ],
        problem=problem,
        tz=rt.policy.tz,
    )


def _instant(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
