"""Agents: the people who work cases, by area and kind (caller or field), with the languages
they speak and how many cases a business day they can take."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.accounts.models import Account
from notifier.audit import service as audit
from notifier.escalation.assignment import Assigner
from notifier.escalation.models import AGENT_KIND, Agent, CaseStatus, Escalation, EscalationChange
from notifier.escalation.service import InvalidInput
from notifier.events.schema import SPOKEN_LANGUAGES

__all__ = [
    "AGENT_KINDS",
    "LANGUAGES",
    "MAX_DAILY_CAPACITY",
    "add_agent",
    "disable_agent",
    "list_agents",
    "namesake",
    "open_cases_by_agent",
    "update_agent",
]

AGENT_KINDS: tuple[str, ...] = tuple(AGENT_KIND.values())
LANGUAGES: tuple[str, ...] = SPOKEN_LANGUAGES
MAX_DAILY_CAPACITY = 1000


def _languages(languages: Sequence[str]) -> list[str]:
    cleaned = [language.strip() for language in languages if language.strip()]
    if unknown := [language for language in cleaned if language not in LANGUAGES]:
        raise InvalidInput(
            "languages", f"{', '.join(map(repr, unknown))}: use {', '.join(LANGUAGES)}"
        )
    return [language for language in LANGUAGES if language in cleaned]


def _capacity(daily_capacity: int | None) -> int | None:
    if daily_capacity is not None and not 1 <= daily_capacity <= MAX_DAILY_CAPACITY:
        raise InvalidInput(
            "daily_capacity",
            f"{daily_capacity}: cases a business day, 1 to {MAX_DAILY_CAPACITY} (none: no limit)",
        )
    return daily_capacity


def add_agent(
    session: Session,
    *,
    name: str,
    area: str,
    kind: str,
    daily_capacity: int | None = None,
    languages: Sequence[str] = (),
) -> Agent:
    """A new active agent; the sweep's next run gives them waiting cases of their area."""
    name, area = name.strip(), area.strip()
    if not name:
        raise InvalidInput("name", "an agent needs a name")
    if not area:
        raise InvalidInput("area", "an agent needs the service area they work in")
    if kind not in AGENT_KINDS:
        raise InvalidInput("kind", f"{kind!r} is not one of {', '.join(AGENT_KINDS)}")
    agent = Agent(
        name=name,
        area=area,
        kind=kind,
        daily_capacity=_capacity(daily_capacity),
        languages=_languages(languages),
    )
    session.add(agent)
    session.flush()
    return agent


def update_agent(
    session: Session,
    agent_id: int,
    *,
    actor: str,
    daily_capacity: int | Literal["keep"] | None = "keep",
    languages: Sequence[str] | None = None,
) -> Agent:
    """Change an agent's capacity (None: no limit) or languages; audited. Left out: kept."""
    agent = session.get(Agent, agent_id, with_for_update=True)
    if agent is None:
        raise InvalidInput("agent_id", f"no agent {agent_id}")
    before = {"daily_capacity": agent.daily_capacity, "languages": list(agent.languages)}
    if daily_capacity != "keep":
        agent.daily_capacity = _capacity(daily_capacity)
    if languages is not None:
        agent.languages = _languages(languages)
    session.add(agent)
    audit.record(
        session,
        actor=actor,
        action="agent.updated",
        target=f"agent {agent_id}",
        detail={
            "before": before,
            "now": {"daily_capacity": agent.daily_capacity, "languages": agent.languages},
        },
    )
    session.flush()
    return agent


def open_cases_by_agent(session: Session) -> dict[int, int]:
    """Open cases per assignee."""
    rows = session.exec(
        select(Escalation.assignee_id, sa.func.count())
        .where(Escalation.status == CaseStatus.OPEN, col(Escalation.assignee_id).is_not(None))
        .group_by(col(Escalation.assignee_id))
    )
    return {agent_id: n for agent_id, n in rows if agent_id is not None}


def namesake(session: Session, *, name: str, area: str) -> Agent | None:
    """An active agent of ``area`` with ``name`` (any case), if there is one.

    The CLI and the API refuse a second one unless asked: a script or a guide run twice
    would otherwise split the area's cases between two records of one person.
    """
    name = name.strip().casefold()
    return next(
        (
            a
            for a in list_agents(session, area=area.strip())
            if a.active and a.name.casefold() == name
        ),
        None,
    )


def list_agents(session: Session, *, area: str | None = None) -> list[Agent]:
    query = select(Agent).order_by(col(Agent.area), col(Agent.id))
    if area is not None:
        query = query.where(Agent.area == area)
    return list(session.exec(query))


def disable_agent(
    session: Session, agent_id: int, *, now: datetime, actor: str, today: date | None = None
) -> tuple[int, int]:
    """Stop giving the agent cases and hand their open ones on; (moved, left unassigned).

    With the business date ``today``, colleagues take them within their capacity of that day.
    """
    agent = session.get(Agent, agent_id, with_for_update=True)
    if agent is None:
        raise InvalidInput("agent_id", f"no agent {agent_id}")
    agent.active = False
    session.add(agent)
    session.flush()
    assigner = Assigner(session, area=agent.area, day=today)
    moved = unassigned = 0
    handed: dict[int, int | None] = {}
    cases = session.exec(
        select(Escalation, Account.spoken_language)
        .join(Account, col(Account.account_no) == col(Escalation.account_no))
        .where(Escalation.assignee_id == agent_id, Escalation.status == CaseStatus.OPEN)
        .with_for_update(of=Escalation)
    )
    for case, language in cases:
        assert case.id is not None
        case.assignee_id = assigner.pick(case.area, case.kind, language=language)
        case.assigned_on = today if case.assignee_id is not None else None
        if case.assignee_id is None and today is not None and assigner.full(case.area, case.kind):
            case.capacity_wait_since = today
        case.updated_at = now
        session.add(case)
        session.add(
            EscalationChange(
                escalation_id=case.id,
                change="reassigned",
                actor=actor,
                detail=f"agent {agent_id} disabled → agent {case.assignee_id}",
                at=now,
            )
        )
        moved += case.assignee_id is not None
        unassigned += case.assignee_id is None
        handed[case.id] = case.assignee_id
    audit.record(
        session,
        actor=actor,
        action="agent.disabled",
        target=f"agent {agent_id}",
        detail={"reassigned": {str(k): v for k, v in handed.items()}},
    )
    return moved, unassigned
