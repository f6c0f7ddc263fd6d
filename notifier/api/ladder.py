"""The collections ladder for supervisors: cases by stage, the printed final demand.

``GET /v1/ladder?stage=`` lists the cases on the ladder (waiting for proof of service,
at the final demand with its deadline, suspension due, suspended, a life-support case
for a supervisor, reconnection due) with what each step rested on; the final demand's
letter prints from ``GET /v1/ladder/{case_id}/final-demand.pdf`` (audited as
``notices.export``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel
from sqlmodel import col, select

from notifier.api.deps import RuntimeDep, SessionDep, require
from notifier.api.errors import KEYED, error_responses
from notifier.audit import service as audit
from notifier.auth import keys
from notifier.auth.models import ApiKey
from notifier.escalation import ladder, stages
from notifier.escalation.letters import final_demand_pdf
from notifier.escalation.models import CollectionStage

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/ladder", tags=["ladder"], responses={**KEYED, **error_responses(404)}
)
Supervisor = Annotated[ApiKey, Depends(require("supervisor"))]
Stage = Literal[
    "final_demand", "suspension_due", "suspended", "reconnection_due", "reconnected", "supervisor"
]


class LadderCaseOut(BaseModel):
    case_id: int
    status: str
    account_no: str
    area: str | None
    stage: str
    state: str
    """The stage, or what the case waits for (``waiting for proof of service``)."""
    reached_on: date | None
    deadline: date | None
    """The final demand's deadline: past it unpaid, the supply may be suspended."""
    owed: int
    protections: list[str]
    notification_id: int | None
    proofs: list[dict[str, Any]]
    """What the latest step rested on: ``how``, ``channel``, ``at``, ``reference``…"""


class LadderOut(BaseModel):
    cases: list[LadderCaseOut]


@router.get("")
def list_ladder(session: SessionDep, _: Supervisor, stage: Stage | None = None) -> LadderOut:
    """Cases on the collections ladder, at ``stage`` if given."""
    return LadderOut(
        cases=[
            LadderCaseOut(
                case_id=row.case_id, status=row.status, account_no=row.account_no,
                area=row.area, stage=row.stage, state=row.state, reached_on=row.reached_on,
                deadline=row.deadline, owed=row.owed, protections=list(row.protections),
                notification_id=row.notification_id, proofs=[dict(p) for p in row.proofs],
            )
            for row in ladder.ladder_rows(session, stage=stage)
        ]
    )  # fmt: skip


@router.get(
    "/{case_id}/final-demand.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def final_demand_letter(
    rt: RuntimeDep, session: SessionDep, key: Supervisor, case_id: int
) -> Response:
    """The printed final demand of case ``case_id``, stating what the ledger says today."""
    step = session.exec(
        select(CollectionStage)
        .where(
            CollectionStage.escalation_id == case_id,
            CollectionStage.stage == stages.FINAL_DEMAND,
        )
        .order_by(col(CollectionStage.id).desc())
    ).first()
    if step is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id} has no final demand")
    today = rt.policy.business_date(rt.clock())
    pdf = final_demand_pdf(rt.settings, rt.renderer, session, [step], today=today)
    audit.record(
        session,
        actor=keys.actor_of(key),
        action="notices.export",
        target=f"case {case_id}",
        detail={"final_demand": step.on.isoformat()},
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="final-demand-case-{case_id}.pdf"'},
    )
