"""Agent pages: today's call or visit list, outcomes, exports, printed notices; supervisors' view.

An agent signs in on a phone in the field: each case is one card with what
the call or the visit needs, and one form to record what happened. A
supervisor sees every case of an area, the unassigned ones, and reassigns.

Audited: every list a supervisor opens here (it shows phones and addresses:
``pii.view``), every download (``list.export``) and printed notices
(``notices.export``); reassignments and supervisors' outcomes on others'
cases are audited by :mod:`notifier.escalation.service`.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Annotated
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select

from notifier.accounts import service as accounts
from notifier.accounts.labels import protection_label, spoken_language_label
from notifier.api.deps import RuntimeDep, SessionDep
from notifier.audit import service as audit
from notifier.escalation import lists
from notifier.escalation import service as cases
from notifier.escalation.downloads import list_file
from notifier.escalation.models import AGENT_KIND, Agent, CaseStatus, Escalation
from notifier.escalation.notices import notices_pdf
from notifier.escalation.record import service_record
from notifier.escalation.record_pdf import LANGUAGES, service_record_pdf
from notifier.events.schema import PROTECTIONS
from notifier.exports import tables as exports
from notifier.users.models import User
from notifier.users.service import actor_of
from notifier.web.deps import (
    LANG_COOKIE,
    AgentUser,
    SupervisorUser,
    csrf_protect,
    redirect,
    render,
)
from notifier.web.i18n import pick_language

__all__ = ["router"]

router = APIRouter(prefix="/agent", include_in_schema=False)
SUPERVISORS = frozenset({"supervisor", "admin"})
SUPERVISOR_PAGE = 500


def _actor(user: User) -> cases.Actor:
    return cases.Actor(
        name=actor_of(user), agent_id=user.agent_id, supervisor=user.role in SUPERVISORS
    )


def _own_agent(session: SessionDep, user: User) -> Agent | None:
    agent = session.get(Agent, user.agent_id) if user.agent_id is not None else None
    return agent if agent is not None and agent.active else None


def _kind_of(agent: Agent) -> str:
    return next(kind for kind, agent_kind in AGENT_KIND.items() if agent_kind == agent.kind)


@router.get("", response_class=HTMLResponse)
def my_cases(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: AgentUser,
    area: str = "",
    unassigned: bool = False,
    waiting: bool = False,
    done: int | None = None,
    protected: str = "",
    problem: str = "",
) -> HTMLResponse:
    """An agent's list for today; a supervisor's view of an area (or the unassigned, or those
    waiting for capacity)."""
    today = rt.policy.business_date(rt.clock())
    agent = _own_agent(session, user)
    supervisor = user.role in SUPERVISORS
    if supervisor and (area or unassigned or waiting or agent is None):
        where = lists.CaseFilter(
            status=CaseStatus.OPEN,
            area=area or None,
            unassigned=unassigned,
            waiting_for_capacity=waiting,
        )
        rows = lists.case_rows(session, where, today=today, limit=SUPERVISOR_PAGE)
        kind = None
    elif agent is not None and agent.id is not None:
        kind = _kind_of(agent)
        rows = lists.agent_list(session, agent.id, kind, today=today)
    else:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this user is not linked to an agent")
    if supervisor:  # the page shows every case's phone and address
        audit.record(
            session,
            actor=actor_of(user),
            action="pii.view",
            target=f"cases of area {area}" if area else "cases",
            detail={"unassigned": unassigned, "waiting": waiting, "cases": len(rows)},
        )
    chosen = (
        ("area", area),
        ("unassigned", unassigned and "true"),
        ("waiting", waiting and "true"),
    )
    here = urlencode({k: v for k, v in chosen if v})
    return render(
        request,
        "agent/cases.html",
        here_url=f"/agent?{here}" if here else "/agent",
        new_key=lambda: secrets.token_urlsafe(16),
        rows=rows,
        kind=kind,
        agent=agent,
        today=today,
        tz=rt.policy.tz,
        supervisor=supervisor,
        areas=_areas(session) if supervisor else [],
        agents=_agents_by_kind(session) if supervisor else {},
        area=area,
        unassigned=unassigned,
        waiting=waiting,
        outcomes=cases.OUTCOMES,
        protections=PROTECTIONS,
        protection_label=protection_label,
        spoken_language_label=spoken_language_label,
        protected=protected,
        done=done,
        problem=problem,
    )


def _areas(session: SessionDep) -> list[str]:
    found = session.execute(
        sa.union(
            sa.select(col(Agent.area)),
            sa.select(col(Escalation.area)).where(
                col(Escalation.status) == CaseStatus.OPEN, col(Escalation.area).is_not(None)
            ),
        )
    )
    return sorted(str(a) for (a,) in found if a)


def _agents_by_kind(session: SessionDep) -> dict[str, list[Agent]]:
    active = session.exec(select(Agent).where(col(Agent.active)).order_by(col(Agent.area)))
    by_kind: dict[str, list[Agent]] = {kind: [] for kind in AGENT_KIND}
    for agent in active:
        by_kind[_kind_of(agent)].append(agent)
    return by_kind


@router.post("/cases/{case_id}/outcome", dependencies=[Depends(csrf_protect)])
def record_outcome(
    rt: RuntimeDep,
    session: SessionDep,
    user: AgentUser,
    case_id: int,
    outcome: Annotated[str, Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
    promise_date: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/agent",
    attempt: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Record a call or a visit, then back to the list (where a closed case is gone).

    ``attempt`` is the form's own random key: a form sent twice (a double tap
    on a slow network) is recorded once.
    """
    back = back if back.startswith("/agent") else "/agent"
    joiner = "&" if "?" in back else "?"
    try:
        promised = date.fromisoformat(promise_date) if promise_date else None
    except ValueError:
        return redirect(f"{back}{joiner}problem=promise_date#case-{case_id}")
    try:
        cases.record_outcome(
            session, case_id, _actor(user), outcome=outcome, note=note.strip() or None,
            promise_date=promised, today=rt.policy.business_date(rt.clock()),
            policy=rt.policy.escalation, now=rt.clock(), request_key=attempt or None,
        )  # fmt: skip
    except cases.InvalidInput as exc:
        return redirect(f"{back}{joiner}problem={exc.field}#case-{case_id}")
    except cases.CaseError as exc:
        raise _http(exc) from None
    return redirect(f"{back}{joiner}done={case_id}")


@router.post("/cases/{case_id}/assign", dependencies=[Depends(csrf_protect)])
def reassign(
    rt: RuntimeDep,
    session: SessionDep,
    user: SupervisorUser,
    case_id: int,
    agent_id: Annotated[str, Form()],
    back: Annotated[str, Form()] = "/agent",
) -> Response:
    """A supervisor gives a case to another agent (or to nobody: an empty choice)."""
    back = back if back.startswith("/agent") else "/agent"
    joiner = "&" if "?" in back else "?"
    if agent_id and not agent_id.isdigit():
        return redirect(f"{back}{joiner}problem=agent_id#case-{case_id}")
    try:
        cases.assign(
            session, case_id, int(agent_id) if agent_id else None, _actor(user), now=rt.clock(),
            today=rt.policy.business_date(rt.clock()),
        )  # fmt: skip
    except cases.InvalidInput as exc:
        return redirect(f"{back}{joiner}problem={exc.field}#case-{case_id}")
    except cases.CaseError as exc:
        raise _http(exc) from None
    return redirect(f"{back}{joiner}done={case_id}")


@router.post("/accounts/{account_no}/protections", dependencies=[Depends(csrf_protect)])
def add_protection(
    rt: RuntimeDep,
    session: SessionDep,
    user: SupervisorUser,
    account_no: str,
    protection: Annotated[str, Form()],
    case_id: Annotated[int, Form()],
    back: Annotated[str, Form()] = "/agent",
) -> Response:
    """A supervisor adds a protection to a case's account (audited by the accounts service)."""
    back = back if back.startswith("/agent") else "/agent"
    joiner = "&" if "?" in back else "?"
    if protection not in PROTECTIONS:
        return redirect(f"{back}{joiner}problem=protection#case-{case_id}")
    account = accounts.add_protections(
        session, account_no, [protection], actor=actor_of(user), now=rt.clock()
    )
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no account {account_no}")
    return redirect(f"{back}{joiner}protected={account_no}#case-{case_id}")


def _http(exc: cases.CaseError) -> HTTPException:
    code = status.HTTP_409_CONFLICT
    if isinstance(exc, cases.CaseNotFound):
        code = status.HTTP_404_NOT_FOUND
    elif isinstance(exc, cases.NotYourCase):
        code = status.HTTP_403_FORBIDDEN
    return HTTPException(code, str(exc))


@router.get("/export.{fmt}")
def export(
    request: Request, rt: RuntimeDep, session: SessionDep, user: AgentUser, fmt: str
) -> Response:
    """Today's list as a CSV, XLSX or ODS file."""
    if fmt not in exports.FORMATS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {fmt} export; try csv, xlsx or ods")
    agent = _own_agent(session, user)
    if agent is None or agent.id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this user is not linked to an agent")
    today = rt.policy.business_date(rt.clock())
    download = list_file(
        session, agent_id=agent.id, kind=_kind_of(agent), fmt=fmt, today=today,
        tz=rt.policy.tz, actor=actor_of(user),
        language=pick_language(request.cookies.get(LANG_COOKIE), user),
    )  # fmt: skip
    return Response(
        download.body,
        media_type=download.media_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
    )


@router.get("/notices.pdf")
def notices(rt: RuntimeDep, session: SessionDep, user: AgentUser) -> Response:
    """Today's visit notices to print, one a page."""
    agent = _own_agent(session, user)
    if agent is None or agent.id is None or _kind_of(agent) != "visit":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "notices are printed by field agents")
    today = rt.policy.business_date(rt.clock())
    rows = lists.agent_list(session, agent.id, "visit", today=today)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no visit cases on your list today")
    audit.record(
        session,
        actor=actor_of(user),
        action="notices.export",
        target=f"agent {agent.id}",
        detail={"day": today.isoformat(), "cases": [r.case_id for r in rows]},
    )
    return Response(
        notices_pdf(rt.settings, rt.renderer, rows, visit_date=today),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="notices-{today.isoformat()}.pdf"'},
    )


@router.get("/accounts/{account_no}/service-record.pdf")
def account_service_record(
    request: Request, rt: RuntimeDep, session: SessionDep, user: SupervisorUser, account_no: str
) -> Response:
    """An account's service record (proof of service) to print, in the page's language."""
    if accounts.get(session, account_no) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no account {account_no}")
    language = pick_language(request.cookies.get(LANG_COOKIE), user)
    record = service_record(session, account_no, now=rt.clock())
    pdf = service_record_pdf(
        record, language=language if language in LANGUAGES else "zh-TW", tz=rt.policy.tz
    )
    audit.record(
        session,
        actor=actor_of(user),
        action="service_record.export",
        target=f"account {account_no}",
        detail={"language": language},
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="service-record-{account_no}.pdf"'},
    )
