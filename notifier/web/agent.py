"""Agent pages: today's call or visit list, outcomes, exports, printed notices; supervisors' view.

An agent signs in on a phone in the field: each case is one card with what
the call or the visit needs (the notices already sent to the customer among
it), and one form to record what happened; or the same list as a table,
sorted by a column (``ListView``: view and order are in the URL). A refused
outcome is answered with the list itself, the error and what was typed on the
case's card (``Draft``). A supervisor sees every case of an area, the
unassigned ones, each agent's open cases, and reassigns one case or the
ticked ones (after a confirmation page).

Audited: every list a supervisor opens here (it shows phones and addresses:
``pii.view``), every download (``list.export``) and printed notices
(``notices.export``); reassignments and supervisors' outcomes on others'
cases are audited by :mod:`notifier.escalation.service`.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from notifier.accounts import service as accounts
from notifier.accounts.labels import protection_label, spoken_language_label
from notifier.accounts.models import Account
from notifier.api.deps import RuntimeDep, SessionDep
from notifier.audit import service as audit
from notifier.deliveries.models import Delivery, Notification
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


VIEWS = ("cards", "table")
SORTS: dict[str, Callable[[lists.CaseRow], Any]] = {
    "case": lambda r: r.case_id,
    "name": lambda r: r.name or "",
    "area": lambda r: r.area or "",
    "owed": lambda r: r.total,
    "overdue": lambda r: r.days_overdue,
    "attempts": lambda r: len(r.attempts),
    "assignee": lambda r: r.assignee or "",
}
"""The table view's sortable columns: ``?sort=owed`` smallest first, ``?sort=-owed`` largest."""
RECENT_NOTICES = 5
"""Notices per card: the newest ones the customer was sent, whatever they were about."""


@dataclass(frozen=True)
class ListView:
    """What the list shows, all of it in the URL: a reload, the back button or a shared link
    shows the same list, and a form's ``back`` brings the agent to it."""

    area: str = ""
    unassigned: bool = False
    waiting: bool = False
    view: str = "cards"
    sort: str = ""

    @classmethod
    def of(cls, *, area: str, unassigned: bool, waiting: bool, view: str, sort: str) -> ListView:
        # An unknown view or sort is the default, not an error: an old bookmark still opens.
        return cls(
            area=area,
            unassigned=unassigned,
            waiting=waiting,
            view=view if view in VIEWS else "cards",
            sort=sort if sort.removeprefix("-") in SORTS else "",
        )

    @classmethod
    def parse(cls, url: str) -> ListView:
        """The view a ``back`` URL (``/agent?view=table&sort=-owed``) names."""
        query = parse_qs(urlsplit(url).query)

        def one(name: str) -> str:
            return query.get(name, [""])[0]

        return cls.of(
            area=one("area"),
            unassigned=one("unassigned") == "true",
            waiting=one("waiting") == "true",
            view=one("view"),
            sort=one("sort"),
        )

    def url(self, **changes: Any) -> str:
        shown = replace(self, **changes)
        pairs = (
            ("area", shown.area),
            ("unassigned", "true" if shown.unassigned else ""),
            ("waiting", "true" if shown.waiting else ""),
            ("view", "" if shown.view == "cards" else shown.view),
            ("sort", shown.sort),
        )
        query = urlencode([(k, v) for k, v in pairs if v])
        return f"/agent?{query}" if query else "/agent"

    def sort_url(self, key: str) -> str:
        """The table sorted by ``key``; the column already sorted so, the other way round."""
        return self.url(view="table", sort=f"-{key}" if self.sort == key else key)

    def ordered(self, rows: list[lists.CaseRow]) -> list[lists.CaseRow]:
        """``rows`` in the chosen order; without one, in working order (the lists' own)."""
        if not self.sort:
            return rows
        key = SORTS[self.sort.removeprefix("-")]
        return sorted(rows, key=lambda r: (key(r), r.case_id), reverse=self.sort.startswith("-"))


@dataclass(frozen=True)
class Draft:
    """An outcome form as it was sent, shown again on its card with what was wrong."""

    case_id: int
    outcome: str
    note: str
    promise_date: str
    field: str


@dataclass(frozen=True)
class SentNotice:
    """A notice the customer was sent, as the card lists it."""

    event_type: str
    level: int
    channel: str
    status: str
    at: datetime


@dataclass(frozen=True)
class AgentLoad:
    """One agent's open cases, for the supervisors' counts."""

    agent_id: int | None
    """None: the cases no one has."""
    name: str
    area: str
    kind: str
    open_cases: int


@router.get("", response_class=HTMLResponse)
def my_cases(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: AgentUser,
    area: str = "",
    unassigned: bool = False,
    waiting: bool = False,
    view: str = "cards",
    sort: str = "",
    done: int | None = None,
    protected: str = "",
    problem: str = "",
    case: int | None = None,
    moved: int | None = None,
) -> HTMLResponse:
    """An agent's list for today; a supervisor's view of an area (or the unassigned, or those
    waiting for capacity); as cards or as a sortable table."""
    shown = ListView.of(area=area, unassigned=unassigned, waiting=waiting, view=view, sort=sort)
    return _cases_page(
        request, rt, session, user, shown, done=done, protected=protected, problem=problem,
        problem_case=case, moved=moved,
    )  # fmt: skip


def _cases_page(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: User,
    shown: ListView,
    *,
    status_code: int = 200,
    draft: Draft | None = None,
    done: int | None = None,
    protected: str = "",
    problem: str = "",
    problem_case: int | None = None,
    moved: int | None = None,
) -> HTMLResponse:
    today = rt.policy.business_date(rt.clock())
    agent = _own_agent(session, user)
    supervisor = user.role in SUPERVISORS
    if supervisor and (shown.area or shown.unassigned or shown.waiting or agent is None):
        where = lists.CaseFilter(
            status=CaseStatus.OPEN,
            area=shown.area or None,
            unassigned=shown.unassigned,
            waiting_for_capacity=shown.waiting,
        )
        rows = lists.case_rows(session, where, today=today, limit=SUPERVISOR_PAGE)
        kind = None
    elif agent is not None and agent.id is not None:
        kind = _kind_of(agent)
        rows = lists.agent_list(session, agent.id, kind, today=today)
    else:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this user is not linked to an agent")
    rows = shown.ordered(rows)
    if supervisor:  # the page shows every case's phone and address
        audit.record(
            session,
            actor=actor_of(user),
            action="pii.view",
            target=f"cases of area {shown.area}" if shown.area else "cases",
            detail={"unassigned": shown.unassigned, "waiting": shown.waiting, "cases": len(rows)},
        )
    escalation = rt.policy.escalation
    promise_days = (
        escalation.max_promise_days_supervisor if supervisor else escalation.max_promise_days
    )
    return render(
        request,
        "agent/cases.html",
        status_code=status_code,
        shown=shown,
        here_url=shown.url(),
        new_key=lambda: secrets.token_urlsafe(16),
        rows=rows,
        kind=kind,
        agent=agent,
        today=today,
        latest_promise=escalation.add_business_days(today, promise_days),
        tz=rt.policy.tz,
        supervisor=supervisor,
        areas=_areas(session) if supervisor else [],
        agents=_agents_by_kind(session) if supervisor else {},
        loads=_agent_loads(session, shown.area) if supervisor else [],
        notices=_recent_notices(session, {r.account_no for r in rows}),
        area=shown.area,
        unassigned=shown.unassigned,
        waiting=shown.waiting,
        outcomes=cases.OUTCOMES,
        protections=PROTECTIONS,
        protection_label=protection_label,
        spoken_language_label=spoken_language_label,
        protected=protected,
        done=done,
        problem=problem,
        problem_case=problem_case,
        moved=moved,
        draft=draft,
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


def _agent_loads(session: SessionDep, area: str) -> list[AgentLoad]:
    """Every active agent's open cases (none too), then the unassigned ones per kind; of one
    area if ``area`` names one."""
    agents_of = [col(Agent.area) == area] if area else []
    cases_of = [col(Escalation.area) == area] if area else []
    per_agent = session.execute(
        sa.select(
            col(Agent.id), col(Agent.name), col(Agent.area), col(Agent.kind),
            sa.func.count(col(Escalation.id)),
        )
        .outerjoin(
            Escalation,
            sa.and_(
                col(Escalation.assignee_id) == col(Agent.id),
                col(Escalation.status) == CaseStatus.OPEN,
            ),
        )
        .where(col(Agent.active), *agents_of)
        .group_by(col(Agent.id), col(Agent.name), col(Agent.area), col(Agent.kind))
        .order_by(col(Agent.area), col(Agent.name), col(Agent.id))
    )  # fmt: skip
    loads = [
        AgentLoad(agent_id, name, area, next(k for k, v in AGENT_KIND.items() if v == kind), n)
        for agent_id, name, area, kind, n in per_agent
    ]
    nobodys = session.execute(
        sa.select(col(Escalation.kind), sa.func.count())
        .where(
            col(Escalation.status) == CaseStatus.OPEN,
            col(Escalation.assignee_id).is_(None),
            *cases_of,
        )
        .group_by(col(Escalation.kind))
        .order_by(col(Escalation.kind))
    )
    loads += [AgentLoad(None, "", "", kind, n) for kind, n in nobodys]
    return loads


def _recent_notices(session: SessionDep, account_nos: set[str]) -> dict[str, list[SentNotice]]:
    """The newest ``RECENT_NOTICES`` deliveries of each account, in one query."""
    if not account_nos:
        return {}
    rank = (
        sa.func.row_number()
        .over(partition_by=col(Delivery.account_no), order_by=col(Delivery.id).desc())
        .label("rank")
    )
    newest = (
        sa.select(
            col(Delivery.account_no), col(Delivery.event_type), col(Notification.level),
            col(Delivery.channel), col(Delivery.status), col(Delivery.created_at), rank,
        )
        .join(Notification, col(Notification.id) == col(Delivery.notification_id))
        .where(col(Delivery.account_no).in_(sorted(account_nos)))
        .subquery()
    )  # fmt: skip
    found = session.execute(
        sa.select(
            newest.c.account_no, newest.c.event_type, newest.c.level, newest.c.channel,
            newest.c.status, newest.c.created_at,
        )
        .where(newest.c.rank <= RECENT_NOTICES)
        .order_by(newest.c.account_no, newest.c.rank)
    )  # fmt: skip
    by_account: dict[str, list[SentNotice]] = defaultdict(list)
    for account_no, *notice in found:
        by_account[account_no].append(SentNotice(*notice))
    return by_account


def _back(back: str) -> str:
    return back if back.startswith("/agent") else "/agent"


@router.post("/cases/{case_id}/outcome", dependencies=[Depends(csrf_protect)])
def record_outcome(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: AgentUser,
    case_id: int,
    outcome: Annotated[str, Form()] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
    promise_date: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/agent",
    attempt: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Record a call or a visit, then back to the list (where a closed case is gone).

    ``attempt`` is the form's own random key: a form sent twice (a double tap
    on a slow network) is recorded once. Refused, the list is the answer (422)
    with the error on the case's card and everything typed still in its form;
    the form's action ends in ``#case-<id>``, so the browser lands on that card.
    """
    back = _back(back)

    def refused(field: str) -> HTMLResponse:
        draft = Draft(case_id, outcome, note, promise_date, field)
        return _cases_page(
            request, rt, session, user, ListView.parse(back), draft=draft,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )  # fmt: skip

    if not outcome:
        return refused("outcome")
    try:
        promised = date.fromisoformat(promise_date) if promise_date else None
    except ValueError:
        return refused("promise_date")
    try:
        cases.record_outcome(
            session, case_id, _actor(user), outcome=outcome, note=note.strip() or None,
            promise_date=promised, today=rt.policy.business_date(rt.clock()),
            policy=rt.policy.escalation, now=rt.clock(), request_key=attempt or None,
        )  # fmt: skip
    except cases.InvalidInput as exc:
        session.rollback()
        return refused(exc.field)
    except cases.CaseError as exc:
        raise _http(exc) from None
    joiner = "&" if "?" in back else "?"
    # "#saved": the note saying so, at the top; else the browser would keep the form's
    # "#case-<id>" and scroll to a card that may have left the list.
    return redirect(f"{back}{joiner}done={case_id}#saved")


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
    back = _back(back)
    joiner = "&" if "?" in back else "?"
    if agent_id and not agent_id.isdigit():
        return redirect(f"{back}{joiner}problem=agent_id&case={case_id}#case-{case_id}")
    try:
        cases.assign(
            session, case_id, int(agent_id) if agent_id else None, _actor(user), now=rt.clock(),
            today=rt.policy.business_date(rt.clock()),
        )  # fmt: skip
    except cases.InvalidInput as exc:
        return redirect(f"{back}{joiner}problem={exc.field}&case={case_id}#case-{case_id}")
    except cases.CaseError as exc:
        raise _http(exc) from None
    return redirect(f"{back}{joiner}done={case_id}#saved")


@router.post("/cases/reassign", dependencies=[Depends(csrf_protect)])
def reassign_many(
    request: Request,
    rt: RuntimeDep,
    user: SupervisorUser,
    case_id: Annotated[list[int] | None, Form()] = None,
    agent_id: Annotated[str, Form()] = "",
    confirmed: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/agent",
) -> Response:
    """A supervisor gives the ticked cases to one agent (or to nobody), once they said yes to
    what the confirmation page lists. All or none: if one case cannot go to that agent (another
    kind, closed meanwhile), nothing moves. Each case is audited as a single reassignment is."""
    back = _back(back)
    joiner = "&" if "?" in back else "?"
    picked = sorted(set(case_id or ()))
    if not picked:
        return redirect(f"{back}{joiner}problem=case_id#bulk")
    if agent_id and not agent_id.isdigit():
        return redirect(f"{back}{joiner}problem=agent_id#bulk")
    target = int(agent_id) if agent_id else None
    # Not SessionDep: the change commits before the browser's redirected GET reads the list.
    with rt.db.session() as session:
        chosen = session.get(Agent, target) if target is not None else None
        if target is not None and (chosen is None or not chosen.active):
            return redirect(f"{back}{joiner}problem=agent_id#bulk")
        found = _picked_cases(session, picked)
        page: dict[str, Any] = {
            "rows": found, "agent": chosen, "agent_id": agent_id, "back": back,
            "missing": len(picked) - len(found), "kind_of_agent": AGENT_KIND,
        }  # fmt: skip
        if confirmed != "yes" or len(found) != len(picked):
            return render(request, "agent/reassign.html", refused="", **page)
        today = rt.policy.business_date(rt.clock())
        try:
            for one in picked:
                cases.assign(session, one, target, _actor(user), now=rt.clock(), today=today)
        except cases.InvalidInput as exc:
            session.rollback()
            return render(
                request, "agent/reassign.html", refused=exc.field, **page,
                status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            )  # fmt: skip
        except cases.CaseError as exc:
            session.rollback()
            raise _http(exc) from None
    return redirect(f"{back}{joiner}moved={len(picked)}#saved")


@dataclass(frozen=True)
class PickedCase:
    """A ticked case, as the confirmation page lists it."""

    case_id: int
    kind: str
    account_no: str
    name: str | None
    area: str | None
    assignee: str | None


def _picked_cases(session: Session, case_ids: list[int]) -> list[PickedCase]:
    """The open ones of ``case_ids``, by id."""
    found = session.execute(
        sa.select(
            col(Escalation.id), col(Escalation.kind), col(Escalation.account_no),
            col(Account.name), col(Escalation.area), col(Agent.name),
        )
        .join(Account, col(Account.account_no) == col(Escalation.account_no))
        .outerjoin(Agent, col(Agent.id) == col(Escalation.assignee_id))
        .where(col(Escalation.id).in_(case_ids), col(Escalation.status) == CaseStatus.OPEN)
        .order_by(col(Escalation.id))
    )  # fmt: skip
    return [PickedCase(*row) for row in found]


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
    back = _back(back)
    joiner = "&" if "?" in back else "?"
    if protection not in PROTECTIONS:
        return redirect(f"{back}{joiner}problem=protection&case={case_id}#case-{case_id}")
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
