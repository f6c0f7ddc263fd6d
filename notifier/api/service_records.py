"""An account's service record (proof of service), for supervisors: JSON, or a PDF for a dispute.

The record holds no personal data (notifier.escalation.record), so it is
not masked; each printed copy is an audit entry (``service_record.export``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from notifier.accounts import service as accounts
from notifier.api.deps import RuntimeDep, SessionDep, require
from notifier.api.errors import KEYED, error_responses
from notifier.audit import service as audit
from notifier.auth import keys
from notifier.auth.models import ApiKey
from notifier.escalation.record import ServiceRecord, service_record
from notifier.escalation.record_pdf import service_record_pdf

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["escalations"], responses={**KEYED, **error_responses(404)})

Supervisor = Annotated[ApiKey, Depends(require("supervisor"))]


@router.get(
    "/accounts/{account_no}/service-record",
    response_model=ServiceRecord,
    responses={200: {"content": {"application/pdf": {}}}},
)
def get_service_record(
    rt: RuntimeDep,
    session: SessionDep,
    key: Supervisor,
    account_no: str,
    format: Annotated[Literal["json", "pdf"], Query(description="pdf: printable")] = "json",
    language: Annotated[Literal["zh-TW", "en"], Query(description="the PDF's language")] = "zh-TW",
) -> ServiceRecord | Response:
    """Every notice to the account, each channel tried, its proofs, and whether it was served."""
    if accounts.get(session, account_no) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no account {account_no}")
    now = rt.clock()
    record = service_record(session, account_no, now=now)
    if format == "json":
        return record
    pdf = service_record_pdf(record, language=language, tz=rt.policy.tz)
    audit.record(
        session,
        actor=keys.actor_of(key),
        action="service_record.export",
        target=f"account {account_no}",
        detail={"language": language},
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="service-record-{account_no}.pdf"'},
    )
