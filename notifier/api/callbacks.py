"""Provider callbacks: Twilio status reports and the voice menu, signature-checked.

Twilio signs each request with ``X-Twilio-Signature`` over the URL it called
and the form parameters (https://www.twilio.com/docs/usage/security). The URL
is rebuilt from ``NOTIFIER_PUBLIC_URL``, the address Twilio was given, so the
check holds behind a proxy.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlmodel import select
from twilio.request_validator import RequestValidator

from channels.twilio_voice import gather_response
from notifier.api.deps import RuntimeDep
from notifier.deliveries.models import Delivery
from notifier.flows.reports import record_report

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/callbacks/twilio", tags=["callbacks"])

# Twilio's MessageStatus / CallStatus → the report our deliveries understand;
# anything else is progress, kept in the timeline as "report".
_SMS = {
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
}
_CALL = {
    "completed": "delivered",
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "canceled": "failed",
}


async def signed_form(request: Request, rt: RuntimeDep) -> dict[str, str]:
    """The form parameters, if Twilio's signature over them is valid; else 403."""
    form = {key: str(value) for key, value in (await request.form()).items()}
    url = rt.settings.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get("X-Twilio-Signature", "")
    token = rt.settings.twilio.auth_token.get_secret_value()
    if not token or not signature or not RequestValidator(token).validate(url, form, signature):
        log.warning("refused a Twilio callback to %s: bad or missing signature", request.url.path)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid Twilio signature")
    return form


SignedForm = Annotated[dict[str, str], Depends(signed_form)]


@router.post("/status/{delivery_id}", status_code=status.HTTP_204_NO_CONTENT)
def status_callback(delivery_id: int, form: SignedForm, rt: RuntimeDep) -> Response:
    """A message or call status report from Twilio."""
    if "CallStatus" in form:
        provider_status, mapping, sid = form["CallStatus"], _CALL, form.get("CallSid", "")
    else:
        provider_status, mapping, sid = (
            form.get("MessageStatus", ""),
            _SMS,
            form.get("MessageSid", ""),
        )
    report = mapping.get(provider_status, "report")
    detail = {"provider_status": provider_status, "sid": sid}
    if form.get("ErrorCode"):
        detail["error_code"] = form["ErrorCode"]
    outcome = record_report(rt, delivery_id, report, provider="twilio", **detail)
    if outcome.enqueue:
        rt.dispatcher.deliver(outcome.enqueue)  # a fallback the report started
    if outcome.retry_in is not None and outcome.channel:
        rt.dispatcher.deliver([(delivery_id, outcome.channel)], countdown=outcome.retry_in)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/gather")
def gather_callback(form: SignedForm, rt: RuntimeDep) -> Response:
    """The digit a customer pressed: 1 hears the notice again, 2 reaches the service line."""
    with rt.db.session() as session:
        delivery = session.exec(
            select(Delivery).where(Delivery.provider_id == form.get("CallSid", ""))
        ).first()
    if delivery is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no call with that CallSid")
    twiml = gather_response(
        form.get("Digits", ""),
        body=delivery.content.get("body") or "",
        language=delivery.language,
        service_line=rt.settings.service_phone,
        gather_url=f"{rt.settings.public_url.rstrip('/')}{router.prefix}/gather",
    )
    return Response(content=twiml, media_type="application/xml")
