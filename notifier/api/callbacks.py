"""Provider callbacks: Twilio status reports and the voice menu, signature-checked.

Twilio signs each request with ``X-Twilio-Signature`` over the URL it called
and the form parameters (https://www.twilio.com/docs/usage/security). The URL
is rebuilt by :func:`notifier.deliveries.callback_tokens.public_url`, which
also made the URL Twilio was given, so the check holds behind a proxy and
under a root path.

Each URL ends in a token (:mod:`notifier.deliveries.callback_tokens`) naming
the delivery and when the URL was issued, under our own HMAC: a token that is
not ours, or older than ``NOTIFIER_CALLBACK_WINDOW_HOURS``, is refused with
403 like a bad signature. A report about a message the delivery did not send
is refused too: with 403 when it is applied in the request (the machine
result), in the log when its batch is applied (a status report, buffered:
flows/report_buffer.py). Inside the window a replayed report is harmless: the
same report is recorded once (flows/reports.py). Refusals are logged with the
reason and, once the token's MAC holds, the delivery id; never the form (it
carries numbers).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Annotated, NoReturn

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MultiDict
from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from channels.twilio_voice import gather_response
from notifier.api.deps import RuntimeDep, get_runtime
from notifier.api.errors import error_responses
from notifier.deliveries import callback_tokens
from notifier.deliveries.callback_tokens import CallbackToken, Purpose, TokenRefused
from notifier.deliveries.models import Delivery, DeliveryStatus
from notifier.flows.report_buffer import apply_now, buffer_of
from notifier.flows.reports import ForeignReport, Report, is_machine, record_report
from notifier.runtime import Runtime

__all__ = ["request_url", "router"]

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1/callbacks/twilio",
    tags=["callbacks"],
    responses=error_responses(400, 403, 404, 413, 422),
)

# Twilio's MessageStatus / CallStatus → the report our deliveries understand;
# anything else is progress, kept in the timeline as "report".
_SMS = {
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    # We cancelled it (a scheduled message) or Twilio did: never sent, for good.
    "canceled": "failed",
    # Only some segments of a split message arrived: the amount, the due date or the
    # service phone may be in a missing one, so the notice is not proven served.
    "partially_delivered": "undelivered",
}
_CALL = {
    "completed": "delivered",
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "canceled": "failed",
}


def request_url(rt: Runtime, request: Request) -> str:
    """The URL Twilio called, as it was given it (behind a proxy, under a root path)."""
    root_path = request.scope.get("root_path", "")
    path = request.url.path
    # uvicorn --root-path puts the prefix in the path too; public_url already has it.
    if root_path and (path == root_path or path.startswith(root_path.rstrip("/") + "/")):
        path = path[len(root_path.rstrip("/")) :]
    return callback_tokens.public_url(
        rt.settings,
        path,
        query=request.url.query,
        root_path=root_path,
        forwarded_proto=request.headers.get("X-Forwarded-Proto"),
        forwarded_host=request.headers.get("X-Forwarded-Host"),
    )


async def signed_form(request: Request, rt: RuntimeDep) -> dict[str, str]:
    """The form parameters, if Twilio's signature over them is valid; else 403.

    Twilio signs every value of a repeated key (``StatusCallbackEvent``), so
    the validator gets them all; the handlers read one value per key. With a
    Webhooks SharedKey (``X-Twilio-Webhooks-Signature-Settings``) the key's
    secret and the header's algorithm (HMAC-SHA1 or HMAC-SHA256) sign it; a
    JSON body is signed through its ``bodySHA256`` query parameter.
    """
    signature = request.headers.get("X-Twilio-Signature", "")
    signing = request.headers.get(SIGNATURE_SETTINGS_HEADER)
    twilio = rt.settings.twilio
    secret = (twilio.webhook_shared_key if signing else twilio.auth_token).get_secret_value()
    fields: dict[str, str] = {}
    signed_over: str | MultiDict | None = None
    if request.headers.get("content-type", "").startswith("application/json"):
        body = (await request.body()).decode("utf-8", "replace")
        if "bodySHA256" in request.query_params:
            signed_over = body
            fields = _json_fields(body)
    else:
        form = await request.form()
        signed_over = MultiDict([(key, str(value)) for key, value in form.multi_items()])
        fields = {key: str(value) for key, value in form.items()}
    if (
        not secret
        or not signature
        or signed_over is None
        or not RequestValidator(secret).validate(
            request_url(rt, request),
            signed_over,
            signature,
            algorithm=get_signature_algorithm(signing),
        )
    ):
        route = getattr(request.scope.get("route"), "path", "?")
        why = "no shared key set" if signing and not secret else "bad or missing signature"
        log.warning("refused a Twilio callback to %s: %s", route, why)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid Twilio signature")
    return fields


def _json_fields(body: str) -> dict[str, str]:
    """A JSON body's top-level values as form fields (empty if it is not an object)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(key): str(value) for key, value in parsed.items() if value is not None}


SignedForm = Annotated[dict[str, str], Depends(signed_form)]


def _read_token(rt: Runtime, token: str, purpose: Purpose) -> CallbackToken:
    """The delivery a callback URL's token names; 403 if it is not ours or too old."""
    try:
        return callback_tokens.read(
            callback_tokens.signing_key(rt.settings),
            token,
            purpose=purpose,
            now=rt.clock(),
            window=timedelta(hours=rt.settings.callback_window_hours),
        )
    except TokenRefused as exc:
        _refuse(purpose, exc.reason, exc.delivery_id)


def _refuse(purpose: Purpose, reason: str, delivery_id: int | None) -> NoReturn:
    log.warning(
        "refused a Twilio %s callback%s: %s",
        purpose,
        f" for delivery {delivery_id}" if delivery_id is not None else "",
        reason,
        extra={"delivery_id": delivery_id} if delivery_id is not None else {},
    )
    raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or expired callback URL")


@router.post("/status/{token}", status_code=status.HTTP_204_NO_CONTENT)
async def status_callback(token: str, request: Request) -> Response:
    """A message or call status report from Twilio, answered before it is applied.

    The buffer (flows/report_buffer.py) applies it within a flush interval; a
    report about a message the delivery did not send is refused there, in the log.
    """
    # Two reports per SMS come here: the runtime and the signed form are read without
    # FastAPI's dependency solving, a tenth of what the request costs (bench/callbacks.py).
    rt = get_runtime(request)
    form = await signed_form(request, rt)
    delivery_id = _read_token(rt, token, "status").delivery_id
    if "CallStatus" in form:
        provider_status, mapping, sid = form["CallStatus"], _CALL, form.get("CallSid", "")
    else:
        provider_status, mapping, sid = (
            form.get("MessageStatus", ""),
            _SMS,
            form.get("MessageSid", ""),
        )
    detail = {"error_code": form["ErrorCode"]} if form.get("ErrorCode") else {}
    if form.get("AnsweredBy"):  # answering machine detection: a voicemail is no proof
        detail["answered_by"] = form["AnsweredBy"]
    if form.get("CallDuration"):  # a person who hung up at once was not served
        detail["call_duration"] = form["CallDuration"]
    report = Report(
        delivery_id,
        mapping.get(provider_status, "report"),
        provider="twilio",
        sid=sid,
        provider_status=provider_status,
        detail=detail,
    )
    buffer = buffer_of(request.app.state)
    if buffer is None or not buffer.put(report):
        try:
            await run_in_threadpool(apply_now, rt, report)
        except ForeignReport as exc:
            _refuse("status", str(exc), delivery_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/gather/{token}")
def gather_callback(token: str, form: SignedForm, rt: RuntimeDep, request: Request) -> Response:
    """The digit a customer pressed: 1 hears the notice again, 2 reaches the service line."""
    delivery_id = _read_token(rt, token, "gather").delivery_id
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such call")
    call_sid = form.get("CallSid", "")
    # Until the worker records the call's sid (still sending, or the answer to the call's
    # create was lost: ambiguous) the token alone vouches.
    waiting = (DeliveryStatus.SENDING, DeliveryStatus.AMBIGUOUS)
    if delivery.status not in waiting and call_sid != delivery.provider_id:
        _refuse("gather", f"delivery {delivery_id} did not place that call", delivery_id)
    twiml = gather_response(
        form.get("Digits", ""),
        body=delivery.content.get("body") or "",
        language=delivery.language,
        dial_number=rt.settings.service_dial_number,
        gather_url=request_url(rt, request),  # the same token: a repeat keeps its menu
        voices={lang: v.model_dump() for lang, v in rt.settings.voice.voices.items()},
    )
    return Response(content=twiml, media_type="application/xml")


# --- answering-machine detection (issue 19) --------------------------------------------------


@router.post("/machine/{token}", status_code=status.HTTP_204_NO_CONTENT)
def machine_callback(token: str, form: SignedForm, rt: RuntimeDep) -> Response:
    """Twilio's asynchronous answering-machine result: who took the call.

    Recorded as ``answered_by`` in the delivery's timeline (the ladder's proof
    reads it); a machine gets the policy's short voicemail, left by a worker
    (routes call no provider), and its ``completed`` later counts as ``voicemail``.
    """
    delivery_id = _read_token(rt, token, "machine").delivery_id
    answered_by, sid = form.get("AnsweredBy", ""), form.get("CallSid", "")
    if not answered_by:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "AnsweredBy is required")
    detail = {"answered_by": answered_by}
    if form.get("MachineDetectionDuration"):
        detail["detection_ms"] = form["MachineDetectionDuration"]
    try:
        record_report(
            rt,
            delivery_id,
            "report",
            provider="twilio",
            sid=sid,
            provider_status=f"answered_by:{answered_by}",
            **detail,
        )
    except ForeignReport as exc:
        _refuse("machine", str(exc), delivery_id)
    if is_machine(answered_by):
        rt.dispatcher.voicemail(delivery_id, sid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
