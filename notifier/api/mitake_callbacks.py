"""Mitake delivery reports: ``GET|POST /v1/callbacks/mitake/status/{token}``.

Mitake calls the ``response`` URL a send gave it, by GET (its usual way) or
POST, with ``msgid``, ``dstaddr``, ``dlvtime``, ``donetime``, ``statusstr``,
``statuscode`` and ``StatusFlag`` (the delivery status: 4 delivered, 5-9
failed, 0-2 progress; see :func:`channels.mitake_sms.report_for`), and wants
``magicid=sms_gateway_rpack`` and the msgid back, else it reports again.

Mitake signs nothing. The only authentication is the URL's token
(:mod:`notifier.deliveries.callback_tokens`, the same signed and dated
per-delivery token as Twilio's, purpose ``status``): a token not ours, or
older than ``NOTIFIER_CALLBACK_WINDOW_HOURS``, is refused with 403. The
report is acknowledged at once and applied with others in a batch
(flows/report_buffer.py); one about a msgid the delivery did not send is
refused then, in the log. Anyone who holds a URL can
report on that one delivery's message until the window ends; a replayed report
is recorded once (flows/reports.py). Refusals are logged with the reason, never
the parameters (they carry the customer's number).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import NoReturn

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from channels.mitake_sms import acknowledgement, report_for
from notifier.api.deps import get_runtime
from notifier.api.errors import error_responses
from notifier.deliveries import callback_tokens
from notifier.deliveries.callback_tokens import TokenRefused
from notifier.flows.report_buffer import apply_now, buffer_of
from notifier.flows.reports import ForeignReport, Report

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1/callbacks/mitake",
    tags=["callbacks"],
    responses=error_responses(400, 403, 413, 422),
)


async def report_fields(request: Request) -> dict[str, str]:
    """The report's parameters: the query string, and a POST's form over it."""
    fields = {key: str(value) for key, value in request.query_params.items()}
    if request.method == "POST":
        form = await request.form()
        fields |= {key: str(value) for key, value in form.items()}
    return fields


# Two routes, not one of two methods: each operation has its own id in the OpenAPI
# document (one route of GET and POST gives both the same id, in no fixed order).
@router.get("/status/{token}", response_class=Response, operation_id="mitake_report_by_get")
@router.post("/status/{token}", response_class=Response, operation_id="mitake_report_by_post")
async def status_callback(token: str, request: Request) -> Response:
    """A delivery report from Mitake, acknowledged before it is applied (in a batch)."""
    # One report per SMS: read without FastAPI's dependency solving, as Twilio's are.
    rt = get_runtime(request)
    fields = await report_fields(request)
    try:
        delivery_id = callback_tokens.read(
            callback_tokens.signing_key(rt.settings),
            token,
            purpose="status",
            now=rt.clock(),
            window=timedelta(hours=rt.settings.callback_window_hours),
        ).delivery_id
    except TokenRefused as exc:
        _refuse(exc.reason, exc.delivery_id)
    msgid = fields.get("msgid", "").strip().lstrip("#")
    # StatusFlag is Mitake's status; statuscode alone (older reports) means the same.
    flag = (fields.get("StatusFlag") or fields.get("statuscode") or "").strip()
    if not msgid or not flag:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, "msgid and StatusFlag are required"
        )
    detail = {"statusstr": fields["statusstr"]} if fields.get("statusstr") else {}
    if report_for(flag) in ("failed", "undelivered"):
        detail["error_code"] = f"mitake:{flag}"
    if fields.get("donetime"):
        detail["donetime"] = fields["donetime"]
    report = Report(
        delivery_id, report_for(flag), provider="mitake", sid=msgid, provider_status=flag,
        detail=detail,
    )  # fmt: skip
    buffer = buffer_of(request.app.state)
    if buffer is None or not buffer.put(report):
        try:
            await run_in_threadpool(apply_now, rt, report)
        except ForeignReport as exc:
            _refuse(str(exc), delivery_id)
    return Response(content=acknowledgement(msgid), media_type="text/plain")


def _refuse(reason: str, delivery_id: int | None) -> NoReturn:
    log.warning(
        "refused a Mitake report%s: %s",
        f" for delivery {delivery_id}" if delivery_id is not None else "",
        reason,
        extra={"delivery_id": delivery_id} if delivery_id is not None else {},
    )
    raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or expired callback URL")
