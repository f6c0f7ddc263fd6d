"""Template previews for ops: exactly what a customer would get."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from notifier.api.deps import OpsDep, RuntimeDep, SessionDep
from notifier.api.errors import KEYED, error_responses
from notifier.notices.previews import UnknownAccount, preview
from notifier.notices.rendering import TemplateError

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/templates", tags=["templates"], responses={**KEYED, **error_responses(404)}
)


class PreviewOut(BaseModel):
    event: str
    channel: str
    language: str
    language_fallback: bool
    subject: str | None
    body: str
    html: str | None
    segments: int | None
    """SMS parts the body takes (GSM-7 160/153, UCS-2 70/67); null for other channels."""


@router.get("/preview")
def get_preview(
    rt: RuntimeDep,
    session: SessionDep,
    _: OpsDep,
    event: Annotated[str, Query(description="bill.unpaid, bill.paid, usage.abnormal, …")],
    channel: Annotated[str, Query(description="sms, voice, email, push, postcard")],
    lang: str | None = None,
    level: Annotated[int, Query(ge=1, le=9)] = 1,
    account_no: Annotated[str | None, Query(pattern=r"^[0-9]{11}$")] = None,
) -> PreviewOut:
    """Render a notice with sample values, or with an account's own bills."""
    try:
        shown = preview(
            rt.renderer,
            rt.settings,
            session,
            event,
            channel,
            language=lang,
            level=level,
            account_no=account_no,
        )
    except UnknownAccount as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except (TemplateError, ValueError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    content = shown.content
    return PreviewOut(
        event=event,
        channel=channel,
        language=content.language,
        language_fallback=content.language_fallback,
        subject=content.subject,
        body=content.body,
        html=content.html,
        segments=shown.segments,
    )
