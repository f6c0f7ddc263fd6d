"""Agents: the people who work cases, by area and kind (caller or field)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.audit import service as audit
from notifier.escalation.assignment import Assigner
from notifier.escalation.models import AGENT_KIND, Agent, CaseStatus, Escalation, EscalationChange
from notifier.escalation.service import InvalidInput

__all__ = ["AGENT_KINDS", "add_agent", "disable_agent", "list_agents", "open_cases_by_agent"]

AGENT_KINDS: tuple[str, ...] = tuple(AGENT_KIND.values())


def add_agent(session: Session, *, name: str, area: str, kind: str) -> Agent:
    """A new active agent; the sweep's next run gives them waiting cases of their area."""
    name, area = name.strip(), area.strip()
    if not name:
        raise InvalidInput("name", "an agent needs a name")
    if not area:
        raise InvalidInput("area", "an agent needs the service area they work in")
    if kind not in AGENT_KINDS:
        raise InvalidInput("kind", f"{kind!r} is not one of {', '.join(AGENT_KINDS)}")
    agent = Agent(name=name, area=area, kind=kind)
    session.add(agent)
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


def list_agents(session: Session, *, area: str | None = None) -> list[Agent]:
    query = select(Agent).order_by(col(Agent.area), col(Agent.id))
    if area is not None:
        query = query.where(Agent.area == area)
    return list(session.exec(query))


def disable_agent(session: Session, agent_id: int, *, now: datetime, actor: str) -> tuple[int, int]:
    """Stop giving the agent cases and hand their open ones on; (moved, left unassigned)."""
    agent = session.get(Agent, agent_id, with_for_update=True)
    if agent is None:
        raise InvalidInput("agent_id", f"no agent {agent_id}")
    agent.active = False
    session.add(agent)
    session.flush()
    assigner = Assigner(session, area=agent.area)
    moved = unassigned = 0
    handed: dict[int, int | None] = {}
    cases = session.exec(
        select(Escalation)
        .where(Escalation.assignee_id == agent_id, Escalation.status == CaseStatus.OPEN)
        .with_for_update()
    )
    for case in cases:
        assert case.id is not None
        case.assignee_id = assigner.pick(case.area, case.kind)
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
