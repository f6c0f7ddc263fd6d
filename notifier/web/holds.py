"""Supervisors' holds page: the holds that apply today, a form to place one, release buttons.

Placing and releasing go through :mod:`notifier.escalation.holds` (audited
there, as from the API); a release's notices are then a worker's task.
Opening the page is not a view of personal data: it shows account and bill
numbers and areas, no names, phones or addresses.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from notifier.api.deps import RuntimeDep, SessionDep
from notifier.escalation import holds
from notifier.users.service import actor_of
from notifier.web.deps import SupervisorUser, csrf_protect, redirect, render

__all__ = ["router"]

router = APIRouter(prefix="/agent/holds", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def holds_page(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    _: SupervisorUser,
    done: int | None = None,
    released: int | None = None,
    problem: str = "",
) -> HTMLResponse:
    """Holds applying today, newest first, with the form to place one."""
    today = rt.policy.business_date(rt.clock())
    return render(
        request,
        "holds/holds.html",
        rows=holds.list_holds(session, holds.HoldFilter(active_on=today)),
        today=today,
        scopes=holds.SCOPES,
        reasons=holds.REASONS,
        done=done,
        released=released,
        problem=problem,
    )


@router.post("", dependencies=[Depends(csrf_protect)])
def place_hold(
    rt: RuntimeDep,
    user: SupervisorUser,
    scope: Annotated[str, Form()],
    reason: Annotated[str, Form()],
    subject: Annotated[str, Form(max_length=64)] = "",
    starts_on: Annotated[str, Form()] = "",
    ends_on: Annotated[str, Form()] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Place a hold; back to the page, saying what was wrong if nothing was stored."""
    today = rt.policy.business_date(rt.clock())
    named = subject.strip() or None
    try:
        first = date.fromisoformat(starts_on) if starts_on else today
    except ValueError:
        return redirect("/agent/holds?problem=starts_on")
    try:
        last = date.fromisoformat(ends_on) if ends_on else None
    except ValueError:
        return redirect("/agent/holds?problem=ends_on")
    # Not SessionDep: the redirected GET must find the hold committed.
    try:
        with rt.db.session() as session:
            hold = holds.create_hold(
                session, scope=scope, reason=reason,
                account_no=named if scope == "account" else None,
                bill_no=named if scope == "bill" else None,
                area=named if scope == "area" else None,
                starts_on=first, ends_on=last, note=note, actor=actor_of(user),
                supervisor=True, today=today,
            )  # fmt: skip
    except holds.InvalidHold as exc:
        return redirect(f"/agent/holds?problem={exc.field}")
    return redirect(f"/agent/holds?done={hold.id}")


@router.post("/{hold_id}/release", dependencies=[Depends(csrf_protect)])
def release(rt: RuntimeDep, user: SupervisorUser, hold_id: int) -> Response:
    """Release a hold now; the worker sends the notices it kept back."""
    try:
        with rt.db.session() as session:
            holds.release_hold(session, hold_id, actor=actor_of(user), now=rt.clock())
    except holds.HoldNotFound:
        return redirect("/agent/holds?problem=hold")
    rt.dispatcher.release_hold(hold_id)  # a second one (a form sent twice) finds nothing to do
    return redirect(f"/agent/holds?released={hold_id}")
