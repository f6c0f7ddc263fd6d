"""Who works a case: the active agent of its area and kind with the fewest open cases."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.escalation.models import AGENT_KIND, Agent, CaseStatus, Escalation

__all__ = ["Assigner"]


class Assigner:
    """Picks agents by load; counts open cases once, then keeps them as it assigns.

    A sweep assigns thousands of cases: one count query up front instead of
    one per case. Ties go to the agent added first, so runs are repeatable.
    """

    def __init__(self, session: Session, *, area: str | None = None) -> None:
        agents = select(Agent).where(col(Agent.active))
        if area is not None:
            agents = agents.where(Agent.area == area)
        open_cases = (
            select(Escalation.assignee_id, Escalation.kind, sa.func.count())
            .where(Escalation.status == CaseStatus.OPEN, col(Escalation.assignee_id).is_not(None))
            .group_by(col(Escalation.assignee_id), col(Escalation.kind))
        )
        counts = {(agent_id, kind): n for agent_id, kind, n in session.exec(open_cases)}
        self._loads: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        for agent in session.exec(agents):
            assert agent.id is not None
            for case_kind, agent_kind in AGENT_KIND.items():
                if agent.kind == agent_kind:
                    self._loads[(agent.area, case_kind)][agent.id] = counts.get(
                        (agent.id, case_kind), 0
                    )

    def pick(self, area: str | None, case_kind: str, *, exclude: int | None = None) -> int | None:
        """The agent id to give a new ``case_kind`` case of ``area`` to, or None if nobody."""
        loads = {
            agent_id: n
            for agent_id, n in self._loads.get((area or "", case_kind), {}).items()
            if agent_id != exclude
        }
        if not loads:
            return None
        chosen = min(loads, key=lambda agent_id: (loads[agent_id], agent_id))
        self._loads[(area or "", case_kind)][chosen] += 1
        return chosen

    def release(self, agent_id: int, area: str | None, case_kind: str) -> None:
        """One case fewer for ``agent_id`` (it closed or moved)."""
        loads = self._loads.get((area or "", case_kind), {})
        if agent_id in loads:
            loads[agent_id] = max(0, loads[agent_id] - 1)
