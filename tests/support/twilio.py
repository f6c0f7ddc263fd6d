"""Twilio callbacks as Twilio would make them: token URLs and X-Twilio-Signature."""

from __future__ import annotations

from datetime import datetime

from twilio.request_validator import RequestValidator

from notifier.db import utcnow
from notifier.deliveries import callback_tokens
from notifier.deliveries.callback_tokens import Purpose
from notifier.flows.report_buffer import buffer_of
from tests.support.stack import Stack

__all__ = ["callback_path", "flush_reports", "signed"]


def callback_path(
    stack: Stack,
    delivery_id: int | None,
    purpose: Purpose = "status",
    *,
    issued_at: datetime | None = None,
    key: bytes | None = None,
) -> str:
    """The path of a callback URL for the delivery, with a token as the worker issues it."""
    assert delivery_id is not None
    token = callback_tokens.issue(
        key or callback_tokens.signing_key(stack.settings),
        delivery_id,
        purpose=purpose,
        now=issued_at or utcnow(),
    )
    return f"/v1/callbacks/twilio/{purpose}/{token}"


def signed(stack: Stack, path: str, params: dict[str, str], auth_token: str) -> dict[str, str]:
    """The X-Twilio-Signature header Twilio would send for ``params`` posted to ``path``."""
    signature = RequestValidator(auth_token).compute_signature(stack.base_url + path, params)
    return {"X-Twilio-Signature": signature}


def flush_reports(stack: Stack) -> None:
    """Apply the status reports the stack's API answered and still holds (flows/report_buffer)."""
    buffer = buffer_of(stack.api.config.app.state)
    assert buffer is not None
    buffer.flush()
