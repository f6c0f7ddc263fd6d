"""Escalation cases: agents' lists and outcomes, supervisors' views, the sweep on demand.

An agent sees their own cases with the contact each needs (the phone for a
call, the address for a visit). A supervisor sees every contact; each such
view is an audit entry (``pii.view``), as is every download of a list
(``list.export``) or of printed notices (``notices.export``), whoever asks.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, select

from notifier.accounts import service as accounts_service
from notifier.api.deps import RuntimeDep, SessionDep, require
from notifier.api.errors import KEYED, error_responses
from notifier.audit import service as audit
from notifier.auth import keys
from notifier.auth.models import ApiKey
from notifier.escalation import agents as agents_service
from notifier.escalation import lists
from notifier.escalation import service as cases
from notifier.escalation.downloads import list_file
from notifier.escalation.models import Agent, CaseStatus, Escalation, EscalationChange, SweepRun
from notifier.escalation.notices import notices_pdf
from notifier.escalation.proposal import dry_run
from notifier.escalation.sweep import queue_run
from notifier.events.schema import PROTECTIONS, SPOKEN_LANGUAGES, Protection, SpokenLanguage
from notifier.policy.rules import parse_policy, read_policy_file
from notifier.privacy.text import Note, PersonName
from notifier.runtime import Runtime

__all__ = ["router"]

router = APIRouter(
    prefix="/v1", tags=["escalations"], responses={**KEYED, **error_responses(404, 409)}
)

AgentOrSupervisor = Annotated[ApiKey, Depends(require("agent", "supervisor"))]
Supervisor = Annotated[ApiKey, Depends(require("supervisor"))]
Admin = Annotated[ApiKey, Depends(require())]
Kind = Literal["call", "visit"]
ListFormat = Literal["json", "csv", "xlsx", "ods"]


class BillLineOut(BaseModel):
    bill_no: str
    period: str
    amount: int
    due_date: date


class AttemptOut(BaseModel):
    at: datetime
    kind: str
    outcome: str
    recorded_by: str
    note: str | None
    promise_date: date | None


class HoldLineOut(BaseModel):
    hold_id: int
    scope: str
    reason: str
    ends_on: date | None


class CaseOut(BaseModel):
    id: int
    kind: str
    status: str
    outcome: str | None
    account_no: str
    name: str | None
    phone: str | None
    """Calls only: the number to dial (E.164)."""
    phone_invalid: bool
    """The phone is the number an agent found wrong: nobody calls it again."""
    address: str | None
    """Visits only: where to go."""
    area: str | None
    assignee_id: int | None
    assignee: str | None
    opened_on: date
    follow_up_on: date | None
    """Off the lists until this day (a promise to pay, a payment claimed)."""
    next_call_at: datetime | None
    """An unanswered call before this does not count against the case."""
    stage: str | None
    """The collections-ladder stage (``final_demand``, ``suspension_due``, …; see /v1/ladder)."""
    protections: list[str]
    """The account's protections: ``life_support`` (維生器材), ``low_income``, ``disabled``,
    ``elderly``."""
    spoken_language: str | None
    """What to speak with the customer: ``zh-TW``, ``nan``, ``hak``, ``en``, ``vi``, ``id``."""
    capacity_wait_since: date | None
    """Unassigned since this day: every agent of its area and kind was full (capacity)."""
    note: str | None
    """What the list says about the case today (a claimed payment the ledger does not show)."""
    bills: list[BillLineOut]
    """The case's bills still unpaid, oldest first."""
    total: int
    days_overdue: int
    failed_calls: int
    attempts: list[AttemptOut]
    hold: HoldLineOut | None = None
    """The hold that applies today (``GET /v1/holds``): the case is off the agents' lists."""

    @classmethod
    def of(cls, row: lists.CaseRow, *, all_contacts: bool = False) -> CaseOut:
        # An agent sees the contact their kind of case needs, nothing more.
        call = row.kind == "call"
        return cls(
            id=row.case_id, kind=row.kind, status=row.status, outcome=row.outcome,
            account_no=row.account_no, name=row.name,
            phone=row.phone if call or all_contacts else None, phone_invalid=row.phone_invalid,
            address=row.address if not call or all_contacts else None,
            area=row.area, assignee_id=row.assignee_id, assignee=row.assignee,
            opened_on=row.opened_on, follow_up_on=row.follow_up_on,
            next_call_at=row.next_call_at, stage=row.stage, protections=row.protections,
            spoken_language=row.spoken_language, capacity_wait_since=row.capacity_wait_since,
            note=row.note,
            bills=[BillLineOut(**vars(b)) for b in row.bills], total=row.total,
            days_overdue=row.days_overdue, failed_calls=row.failed_calls,
            attempts=[AttemptOut(**vars(a)) for a in row.attempts],
            hold=HoldLineOut(**vars(row.hold)) if row.hold else None,
        )  # fmt: skip


class CaseList(BaseModel):
    kind: Kind
    agent_id: int
    day: date
    count: int
    total: int
    items: list[CaseOut]


class ChangeOut(BaseModel):
    at: datetime
    change: str
    actor: str
    detail: str | None


class CaseDetail(CaseOut):
    history: list[ChangeOut]


class CasePage(BaseModel):
    items: list[CaseOut]
    next_cursor: str | None


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal[
        "promised",
        "refused",
        "no_answer",
        "wrong_number",
        "notice_delivered",
        "nobody_home",
        "paid",
    ]
    note: Note | None = Field(None, max_length=2000)
    promise_date: date | None = None


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: int | None
    """The agent to give the case to; null leaves it unassigned."""


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PersonName = Field(min_length=1, max_length=200)
    area: PersonName = Field(min_length=1, max_length=64)
    kind: Literal["caller", "field"]
    daily_capacity: int | None = Field(None, ge=1, le=agents_service.MAX_DAILY_CAPACITY)
    """Cases a business day; null: no limit."""
    languages: list[SpokenLanguage] = Field([], max_length=len(SPOKEN_LANGUAGES))
    """What they speak with customers."""
    allow_duplicate: bool = False
    """Add them even if an active agent of the area has the same name (another person)."""


class AgentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_capacity: int | None = Field(None, ge=1, le=agents_service.MAX_DAILY_CAPACITY)
    """Cases a business day; null: no limit. Left out: kept."""
    languages: list[SpokenLanguage] | None = Field(None, max_length=len(SPOKEN_LANGUAGES))
    """Left out: kept."""


class ProtectionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protections: list[Protection] = Field(min_length=1, max_length=len(PROTECTIONS))
    """Protections to add; those the account has already stay."""


class ProtectionsOut(BaseModel):
    account_no: str
    protections: list[str]
    """All the account's protections now: the producer's and those supervisors added."""
    added_by_supervisors: list[str]


class SweepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: date | None = None
    """The business date to sweep as of; today (Asia/Taipei) if left out."""
    dry_run: bool = False
    """Answer what the sweep would do (200, ``ProposalOut``), changing nothing."""
    policy: dict[str, Any] | None = None
    """With ``dry_run``: a proposed policy, as settings merged over the current policy file
    (``{"escalation": {"min_arrears": 500}}``), run beside the current one."""


class CaseLineOut(BaseModel):
    area: str
    kind: str
    stage: str | None
    change: str
    """``opened``, ``reopened``, ``bills joined``, ``closed (paid)``, ``assigned``,
    ``unassigned``, or a change a ladder stage records."""
    cases: int


class FiguresOut(BaseModel):
    as_of: date
    counts: dict[str, int]
    """The run's counts: ``accounts`` checked, ``opened``, ``reopened``, ``joined`` (bills),
    ``closed``, ``assigned``, ``unassigned``."""
    cases: list[CaseLineOut]
    """By area, kind and stage of the case."""
    callbacks: dict[str, int]
    """Producer callbacks the run would owe, by type."""
    notifications: dict[str, int]
    """Notices the run would create, by type."""


class ProposalOut(BaseModel):
    dry_run: Literal[True] = True
    current: FiguresOut
    """Under the policy in force."""
    proposed: FiguresOut | None
    """Under the proposed policy, when one was given."""


class SweepOut(BaseModel):
    id: int
    as_of: date
    trigger: str
    status: str
    accounts: int
    checked: int
    opened: int
    joined: int
    closed: int
    reopened: int
    assigned: int
    unassigned: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class StatsOut(BaseModel):
    open_by_area: dict[str, dict[str, int]]
    """Per area: open ``call`` and ``visit`` cases, how many of them are ``unassigned``, and of
    those how many are ``waiting_for_capacity`` (every agent of the area full)."""
    outcomes_since: date
    outcomes_by_area: dict[str, dict[str, int]]
    """Per area: outcomes recorded since ``outcomes_since``, by outcome."""
    closed_by_area: dict[str, dict[str, int]]
    """Per area: cases closed since ``outcomes_since`` by how: ``paid`` (collected) apart from
    ``paid_before_trigger`` (paid in time, heard of late), ``notice_delivered``."""


class AgentOut(BaseModel):
    id: int
    name: str
    area: str
    kind: str
    daily_capacity: int | None
    """Cases a business day; null: no limit."""
    languages: list[str]
    active: bool
    open_cases: int


def _actor(key: ApiKey) -> cases.Actor:
    return cases.Actor(
        name=keys.actor_of(key),
        agent_id=key.agent_id,
        supervisor=key.role in {"supervisor", "admin"},
    )


def _my_agent(session: SessionDep, key: AgentOrSupervisor) -> Agent:
    agent = session.get(Agent, key.agent_id) if key.agent_id is not None else None
    if agent is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this key is not tied to an agent")
    if not agent.active:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"agent {agent.id} is disabled")
    return agent


MyAgent = Annotated[Agent, Depends(_my_agent)]


def _case_error(
    exc: cases.CaseError, *, where: str = "body"
) -> HTTPException | RequestValidationError:
    if isinstance(exc, cases.CaseNotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, cases.NotYourCase):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(exc))
    if isinstance(exc, cases.CaseClosed):
        return HTTPException(status.HTTP_409_CONFLICT, str(exc))
    assert isinstance(exc, cases.InvalidInput)
    # The app's handler answers it like any bad body: 422 naming the field.
    return RequestValidationError(
        [{"loc": (where, exc.field), "msg": exc.message, "type": "value_error"}]
    )


@router.get("/escalations/mine", response_model=CaseList)
def my_list(
    rt: RuntimeDep,
    session: SessionDep,
    key: AgentOrSupervisor,
    agent: MyAgent,
    kind: Kind,
    format: ListFormat = "json",
) -> CaseList | Response:
    """Today's call or visit list of the key's agent: JSON, or a CSV/XLSX/ODS file."""
    assert agent.id is not None
    today = rt.policy.business_date(rt.clock())
    if format != "json":
        download = list_file(
            session, agent_id=agent.id, kind=kind, fmt=format, today=today,
            tz=rt.policy.tz, actor=keys.actor_of(key),
        )  # fmt: skip
        return Response(
            download.body,
            media_type=download.media_type,
            headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
        )
    rows = lists.agent_list(session, agent.id, kind, today=today)
    return CaseList(
        kind=kind,
        agent_id=agent.id,
        day=today,
        count=len(rows),
        total=sum(r.total for r in rows),
        items=[CaseOut.of(r) for r in rows],
    )


@router.get(
    "/escalations/mine/notices.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def my_notices(
    rt: RuntimeDep,
    session: SessionDep,
    key: AgentOrSupervisor,
    agent: MyAgent,
    day: date | None = None,
) -> Response:
    """The printed notices of today's visit list, one a page, dated ``day`` (default today)."""
    assert agent.id is not None
    today = rt.policy.business_date(rt.clock())
    day = _notice_day(rt, day, today)
    rows = lists.agent_list(session, agent.id, "visit", today=today)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no visit cases on your list today")
    pdf = notices_pdf(rt.settings, rt.renderer, rows, visit_date=day)
    audit.record(
        session,
        actor=keys.actor_of(key),
        action="notices.export",
        target=f"agent {agent.id}",
        detail={"day": day.isoformat(), "cases": [r.case_id for r in rows]},
    )
    return _pdf(pdf, f"notices-{agent.id}-{day.isoformat()}.pdf")


@router.get("/escalations/stats")
def escalation_stats(
    rt: RuntimeDep, session: SessionDep, _: Supervisor, since: date | None = None
) -> StatsOut:
    """Open cases by area and kind (and unassigned), outcomes by area since ``since`` (today)."""
    today = rt.policy.business_date(rt.clock())
    return StatsOut(**lists.stats(session, since=since or today, tz=rt.policy.tz))


@router.get("/escalations")
def all_cases(
    rt: RuntimeDep,
    session: SessionDep,
    key: Supervisor,
    status_: Annotated[Literal["open", "done", "cancelled"] | None, Query(alias="status")] = None,
    kind: Kind | None = None,
    area: str | None = None,
    assignee: int | None = None,
    unassigned: bool = False,
    waiting_for_capacity: bool = False,
    cursor: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CasePage:
    """Every case, oldest first, filtered; ``unassigned=true`` is the list nobody works yet,
    ``waiting_for_capacity=true`` the part of it that waits for an agent with room."""
    where = lists.CaseFilter(
        status=status_,
        kind=kind,
        area=area,
        assignee_id=assignee,
        unassigned=unassigned,
        waiting_for_capacity=waiting_for_capacity,
        after_id=int(cursor) if cursor else None,
    )
    today = rt.policy.business_date(rt.clock())
    rows = lists.case_rows(session, where, today=today, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    audit.record(
        session,
        actor=keys.actor_of(key),
        action="pii.view",
        target="escalations",
        detail={
            **{k: v for k, v in vars(where).items() if v not in (None, False)},
            "cases": len(rows),
            "case_ids": [rows[0].case_id, rows[-1].case_id] if rows else [],
        },
    )
    return CasePage(
        items=[CaseOut.of(r, all_contacts=True) for r in rows],
        next_cursor=str(rows[-1].case_id) if more else None,
    )


@router.post(
    "/escalations/sweeps",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": ProposalOut, "description": "a dry run: what the sweep would do"}},
)
def start_sweep(
    rt: RuntimeDep, session: SessionDep, key: Admin, body: SweepIn, response: Response
) -> SweepOut | ProposalOut:
    """Queue a sweep as of ``as_of``; poll ``GET /v1/escalations/sweeps/{id}`` for progress.

    With ``dry_run``, answer at once (200) what it would do, and under ``policy`` beside it.
    """
    as_of = body.as_of or rt.policy.business_date(rt.clock())
    if body.dry_run:
        response.status_code = status.HTTP_200_OK
        return _proposal(rt, as_of, body.policy)
    if body.policy is not None:
        raise RequestValidationError(
            [{"loc": ("body", "policy"), "msg": "goes with dry_run", "type": "value_error"}]
        )
    run = queue_run(session, as_of, trigger=f"api:{key.name}", now=rt.clock())
    session.commit()  # the worker must find the run
    assert run.id is not None
    rt.dispatcher.sweep(run.id)
    return SweepOut.model_validate(run, from_attributes=True)


def _proposal(rt: Runtime, as_of: date, changes: dict[str, Any] | None) -> ProposalOut:
    proposed = None
    if changes is not None:
        path = rt.settings.policy_file
        try:
            proposed = parse_policy(_merged(read_policy_file(path), changes), folder=path.parent)
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {"loc": ("body", "policy", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors()
                ]
            ) from None
    current = dry_run(rt.db, rt.policy.escalation, as_of, clock=rt.clock)
    then = dry_run(rt.db, proposed.escalation, as_of, clock=rt.clock) if proposed else None
    return ProposalOut(
        current=FiguresOut.model_validate(current.as_dict()),
        proposed=FiguresOut.model_validate(then.as_dict()) if then else None,
    )


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it, mapping by mapping."""
    out = dict(base)
    for name, value in changes.items():
        below = out.get(name)
        out[name] = (
            _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
        )
    return out


@router.get("/escalations/sweeps/{run_id}")
def get_sweep(run_id: int, session: SessionDep, _: Supervisor) -> SweepOut:
    """A sweep run and how far it got."""
    run = session.get(SweepRun, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sweep run {run_id}")
    return SweepOut.model_validate(run, from_attributes=True)


@router.get("/escalations/{case_id}")
def get_case(
    rt: RuntimeDep, session: SessionDep, key: AgentOrSupervisor, case_id: int
) -> CaseDetail:
    """One case with its bills, attempts and history (an agent: only their own)."""
    row = _row(rt, session, key, case_id)
    unmasked = key.role != "agent"
    if unmasked:
        audit.record(session, actor=keys.actor_of(key), action="pii.view", target=f"case {case_id}")
    history = session.exec(
        select(EscalationChange)
        .where(EscalationChange.escalation_id == case_id)
        .order_by(col(EscalationChange.at), col(EscalationChange.id))
    )
    return CaseDetail(
        **CaseOut.of(row, all_contacts=unmasked).model_dump(),
        history=[
            ChangeOut(at=c.at, change=c.change, actor=c.actor, detail=c.detail) for c in history
        ],
    )


@router.get(
    "/escalations/{case_id}/notice.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def case_notice(
    rt: RuntimeDep,
    session: SessionDep,
    key: AgentOrSupervisor,
    case_id: int,
    day: date | None = None,
) -> Response:
    """The printed notice of one visit case, dated ``day`` (default today)."""
    row = _row(rt, session, key, case_id)
    if row.kind != "visit" or row.status != CaseStatus.OPEN:
        raise HTTPException(status.HTTP_409_CONFLICT, f"case {case_id} is not an open visit case")
    visit_date = _notice_day(rt, day, rt.policy.business_date(rt.clock()))
    pdf = notices_pdf(rt.settings, rt.renderer, [row], visit_date=visit_date)
    audit.record(
        session,
        actor=keys.actor_of(key),
        action="notices.export",
        target=f"case {case_id}",
        detail={"day": visit_date.isoformat()},
    )
    return _pdf(pdf, f"notice-case-{case_id}.pdf")


@router.post("/escalations/{case_id}/outcome")
def record_outcome(
    rt: RuntimeDep,
    session: SessionDep,
    key: AgentOrSupervisor,
    case_id: int,
    body: OutcomeIn,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=64,
            pattern=r"^[A-Za-z0-9._:-]+$",
            description="the same key on a retried POST records the outcome once",
        ),
    ] = None,
) -> CaseOut:
    """Record a call or visit; an agent only on cases assigned to them."""
    # A case of someone else's (a supervisor's outcome) is audited, and answered
    # with every contact; on one's own case, the contact it needs.
    assignee = session.exec(select(Escalation.assignee_id).where(Escalation.id == case_id)).first()
    own = key.agent_id is not None and assignee == key.agent_id
    try:
        cases.record_outcome(
            session,
            case_id,
            _actor(key),
            outcome=body.outcome,
            note=body.note,
            promise_date=body.promise_date,
            today=rt.policy.business_date(rt.clock()),
            policy=rt.policy.escalation,
            now=rt.clock(),
            request_key=idempotency_key,
        )
    except cases.CaseError as exc:
        raise _case_error(exc) from None
    session.flush()
    # The case may have become a visit for someone else: read it back without the check.
    row = _row(rt, session, key, case_id, check=False)
    answer = CaseOut.of(row, all_contacts=key.role != "agent" and not own)
    if key.role == "agent" and row.assignee_id != key.agent_id:
        answer.phone = answer.address = None  # no longer theirs: nothing to call or visit
    return answer


@router.post("/escalations/{case_id}/assign")
def reassign(
    rt: RuntimeDep, session: SessionDep, key: Supervisor, case_id: int, body: AssignIn
) -> CaseOut:
    """Give an open case to another agent of its kind (of any area), or to nobody."""
    try:
        cases.assign(
            session, case_id, body.agent_id, _actor(key), now=rt.clock(),
            today=rt.policy.business_date(rt.clock()),
        )  # fmt: skip
    except cases.CaseError as exc:
        raise _case_error(exc) from None
    session.flush()
    return CaseOut.of(_row(rt, session, key, case_id), all_contacts=True)


@router.get("/agents")
def list_agents(session: SessionDep, _: Supervisor, area: str | None = None) -> list[AgentOut]:
    """Agents with their open cases, for reassigning."""
    load = agents_service.open_cases_by_agent(session)
    return [
        _agent_out(a, load.get(a.id or 0, 0))
        for a in agents_service.list_agents(session, area=area)
    ]


def _agent_out(agent: Agent, open_cases: int) -> AgentOut:
    assert agent.id is not None
    return AgentOut(
        id=agent.id, name=agent.name, area=agent.area, kind=agent.kind,
        daily_capacity=agent.daily_capacity, languages=agent.languages, active=agent.active,
        open_cases=open_cases,
    )  # fmt: skip


@router.post("/agents", status_code=status.HTTP_201_CREATED)
def add_agent(session: SessionDep, key: Admin, body: AgentIn) -> AgentOut:
    """Add an agent: area, kind, daily capacity (null: no limit), languages; audited. A name
    an active agent of the area has already is a 422 on ``name`` unless ``allow_duplicate``."""
    same = agents_service.namesake(session, name=body.name, area=body.area)
    if same and not body.allow_duplicate:
        raise _case_error(
            cases.InvalidInput(
                "name",
                f"agent {same.id} has that name in {same.area} already; use that id, or send "
                '"allow_duplicate": true for another person of the same name',
            )
        )
    try:
        agent = agents_service.add_agent(
            session, name=body.name, area=body.area, kind=body.kind,
            daily_capacity=body.daily_capacity, languages=body.languages,
        )  # fmt: skip
    except cases.InvalidInput as exc:
        raise _case_error(exc) from None
    audit.record(
        session, actor=keys.actor_of(key), action="agent.added", target=f"agent {agent.id}",
        detail={"area": agent.area, "kind": agent.kind, "daily_capacity": agent.daily_capacity,
                "languages": agent.languages},
    )  # fmt: skip
    return _agent_out(agent, 0)


@router.patch("/agents/{agent_id}")
def change_agent(session: SessionDep, key: Admin, agent_id: int, body: AgentChange) -> AgentOut:
    """Change an agent's daily capacity or languages (fields left out are kept); audited."""
    sent = body.model_fields_set
    try:
        agent = agents_service.update_agent(
            session, agent_id, actor=keys.actor_of(key),
            **({"daily_capacity": body.daily_capacity} if "daily_capacity" in sent else {}),
            languages=body.languages,
        )  # fmt: skip
    except cases.InvalidInput as exc:
        if exc.field == "agent_id":
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        raise _case_error(exc) from None
    load = agents_service.open_cases_by_agent(session)
    return _agent_out(agent, load.get(agent_id, 0))


@router.post("/accounts/{account_no}/protections")
def add_protections(
    rt: RuntimeDep, session: SessionDep, key: Supervisor, account_no: str, body: ProtectionsIn
) -> ProtectionsOut:
    """A supervisor adds protections to an account (audited); the producer's list keeps them."""
    account = accounts_service.add_protections(
        session, account_no, body.protections, actor=keys.actor_of(key), now=rt.clock()
    )
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no account {account_no}")
    return ProtectionsOut(
        account_no=account.account_no,
        protections=account.protections,
        added_by_supervisors=account.protections_added,
    )


def _row(
    rt: RuntimeDep, session: SessionDep, key: ApiKey, case_id: int, *, check: bool = True
) -> lists.CaseRow:
    if check:
        try:
            cases.get_case(session, case_id, _actor(key))
        except cases.CaseError as exc:
            raise _case_error(exc) from None
    today = rt.policy.business_date(rt.clock())
    rows = lists.case_rows(session, lists.CaseFilter(case_id=case_id), today=today)
    if not rows or rows[0].case_id != case_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no escalation case {case_id}")
    return rows[0]


def _notice_day(rt: RuntimeDep, day: date | None, today: date) -> date:
    """The date a printed notice bears: today unless asked, and never past or too far ahead."""
    try:
        return cases.check_notice_day(day or today, today=today, policy=rt.policy.escalation)
    except cases.InvalidInput as exc:
        raise _case_error(exc, where="query") from None


def _pdf(body: bytes, filename: str) -> Response:
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )
