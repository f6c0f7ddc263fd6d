"""Who works a case: an agent of its area and kind with room today, speaking the customer's
language if one can, else the least loaded.

An agent's ``daily_capacity`` is how many cases they may be given on one
business date (counted by ``Escalation.assigned_on``); null is no limit. A
case nobody of its area has room for waits unassigned for the next business
day (:func:`priority` decides who goes first then).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.escalation.models import AGENT_KIND, Agent, CaseKind, CaseStatus, Escalation

__all__ = ["Assigner", "priority"]


@dataclass
class _Seat:
    open_cases: int
    languages: frozenset[str]
    capacity: int | None
    given_today: int

    @property
    def has_room(self) -> bool:
        return self.capacity is None or self.given_today < self.capacity


class Assigner:
    """Picks agents by language, room and load; reads the counts once, then keeps them.

    A sweep assigns thousands of cases: two count queries up front instead of
    two per case. Ties go to the agent added first, so runs are repeatable.
    ``day`` is the business date assignments count against capacity on;
    without one, capacity is not looked at (nothing is given on a date then).
    """

    def __init__(
        self, session: Session, *, day: date | None = None, area: str | None = None
    ) -> None:
        agents = select(Agent).where(col(Agent.active))
        if area is not None:
            agents = agents.where(Agent.area == area)
        open_cases = (
            select(Escalation.assignee_id, Escalation.kind, sa.func.count())
            .where(Escalation.status == CaseStatus.OPEN, col(Escalation.assignee_id).is_not(None))
            .group_by(col(Escalation.assignee_id), col(Escalation.kind))
        )
        counts = {(agent_id, kind): n for agent_id, kind, n in session.exec(open_cases)}
        given: dict[int, int] = {}
        if day is not None:
            given = {
                agent_id: n
                for agent_id, n in session.exec(
                    select(Escalation.assignee_id, sa.func.count())
                    .where(Escalation.assigned_on == day, col(Escalation.assignee_id).is_not(None))
                    .group_by(col(Escalation.assignee_id))
                )
                if agent_id is not None
            }
        self.day = day
        self._seats: dict[tuple[str, str], dict[int, _Seat]] = defaultdict(dict)
        for agent in session.exec(agents):
            assert agent.id is not None
            for case_kind, agent_kind in AGENT_KIND.items():
                if agent.kind == agent_kind:
                    self._seats[(agent.area, case_kind)][agent.id] = _Seat(
                        counts.get((agent.id, case_kind), 0),
                        frozenset(agent.languages),
                        agent.daily_capacity if day is not None else None,
                        given.get(agent.id, 0),
                    )

    def pick(
        self,
        area: str | None,
        case_kind: str,
        *,
        language: str | None = None,
        exclude: int | None = None,
    ) -> int | None:
        """The agent id to give a new ``case_kind`` case of ``area`` to, or None if nobody.

        Among the agents with room today: those speaking ``language`` (the
        customer's spoken language) if any, then the fewest open cases.
        """
        seats = self._seats.get((area or "", case_kind), {})
        free = {i: s for i, s in seats.items() if i != exclude and s.has_room}
        if not free:
            return None
        speaking = {i: s for i, s in free.items() if language in s.languages}
        choice = speaking or free
        chosen = min(choice, key=lambda i: (choice[i].open_cases, i))
        choice[chosen].open_cases += 1
        choice[chosen].given_today += 1
        return chosen

    def full(self, area: str | None, case_kind: str) -> bool:
        """Whether the area has agents of the kind and none has room left today."""
        seats = self._seats.get((area or "", case_kind), {})
        return bool(seats) and not any(s.has_room for s in seats.values())

    def release(self, agent_id: int, area: str | None, case_kind: str) -> None:
        """One case fewer for ``agent_id`` (it closed or moved); today's count stays."""
        seat = self._seats.get((area or "", case_kind), {}).get(agent_id)
        if seat is not None:
            seat.open_cases = max(0, seat.open_cases - 1)


def priority(
    *, kind: str, protections: Collection[str], owed: int, days_overdue: int, case_id: int
) -> tuple[int, int, int]:
    """Sort key of cases waiting for an agent: who is given one first when room is short.

    Protected customers' visits first (a life-support home cannot wait
    behind a larger debt); then the larger amount owed × days overdue; then
    the older case.
    """
    protected_visit = kind == CaseKind.VISIT and bool(protections)
    return (0 if protected_visit else 1, -(owed * days_overdue), case_id)
