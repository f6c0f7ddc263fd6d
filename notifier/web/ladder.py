"""Supervisor page: the collections ladder, every case past its visit or calls by stage.

``GET /agent/ladder?stage=`` shows each case's stage or what it waits for ("waiting
for proof of service"), the final demand's deadline, what is owed, the account's
protections and the proofs the latest step rested on, with a link to print its final
demand. Account numbers only: no names, phones or addresses, so nothing to audit.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from notifier.api.deps import RuntimeDep, SessionDep
from notifier.escalation import ladder, stages
from notifier.web.deps import SupervisorUser, render

__all__ = ["router"]

router = APIRouter(prefix="/agent", include_in_schema=False)


@router.get("/ladder", response_class=HTMLResponse)
def ladder_page(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    _: SupervisorUser,
    stage: str | None = None,
) -> HTMLResponse:
    """The ladder's cases, at one stage or all."""
    chosen = stage if stage in stages.STAGES else None
    return render(
        request,
        "ladder/cases.html",
        rows=ladder.ladder_rows(session, stage=chosen),
        stages=stages.STAGES,
        stage=chosen,
        today=rt.policy.business_date(rt.clock()),
    )
