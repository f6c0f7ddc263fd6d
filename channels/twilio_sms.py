"""SMS through Twilio Programmable Messaging.

One message per send, to ``message.to[0]``, from ``from_number`` or through a
Messaging Service (``messaging_service_sid``; Twilio then picks the sender and
answers ``accepted`` instead of ``queued``). ``message.callback_url`` becomes
the ``StatusCallback``: Twilio posts ``sent``, ``delivered``, ``undelivered``
or ``failed`` there, signed with ``X-Twilio-Signature``.

Vendor pages:

* create a message: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
* status callbacks: https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
* the 1,600-character body limit (error 21617): https://www.twilio.com/docs/errors/21617

Errors are mapped in :mod:`channels.twilio_common`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from channels.base import Channel, Message, PermanentChannelError, SendResult
from channels.registry import register
from channels.sms import sms_segments
from channels.twilio_common import (
    DEFAULT_BASE_URL,
    LOOKUP_LIMIT,
    TwilioConnection,
    accepted_since,
    translate_errors,
)

__all__ = ["TwilioSms"]


@register("sms", "twilio")
class TwilioSms(Channel):
    """Send one SMS per message through the Twilio REST API."""

    channel: ClassVar[str] = "sms"
    provider: ClassVar[str] = "twilio"
    body_maxlen: ClassVar[int] = 1600  # Twilio refuses longer bodies with 21617

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str = "",
        messaging_service_sid: str = "",
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        if not account_sid:
            raise ValueError("twilio account_sid is required")
        if not auth_token:
            raise ValueError("twilio auth_token is required")
        if not from_number and not messaging_service_sid:
            raise ValueError("twilio SMS needs from_number or messaging_service_sid")
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self._twilio = TwilioConnection(
            account_sid=account_sid, auth_token=auth_token, base_url=base_url, timeout=timeout
        )

    async def send(self, message: Message) -> SendResult:
        if not message.to:
            raise PermanentChannelError("no recipient", code="no_recipient")
        to = message.to[0]
        if len(message.body) > self.body_maxlen:
            raise PermanentChannelError(
                f"body of {len(message.body)} characters exceeds {self.body_maxlen}",
                code="21617",
            )
        with translate_errors(to=to):
            sent = await self._twilio.client().messages.create_async(
                to=to,
                body=message.body,
                from_=self.from_number or None,
                messaging_service_sid=self.messaging_service_sid or None,
                status_callback=message.callback_url,
            )
        return SendResult(
            provider=self.provider,
            provider_id=str(sent.sid),
            status="sent",
            detail={
                "segments": _segments(sent.num_segments, message.body),
                "twilio_status": str(sent.status),
            },
        )

    async def lookup(self, message: Message, *, since: datetime) -> Sequence[SendResult]:
        """Messages to ``message.to[0]`` with this text that Twilio took since ``since``.

        A Message resource does not carry its ``StatusCallback`` (so not our
        per-delivery token): the match is recipient, sender, text and time
        (https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources).
        """
        if not message.to:
            return []
        with translate_errors(to=message.to[0]):
            records = await self._twilio.client().messages.list_async(
                to=message.to[0],
                from_=self.from_number or None,
                limit=LOOKUP_LIMIT,
                page_size=LOOKUP_LIMIT,
            )
        return accepted_since((r for r in records if r.body == message.body), since)

    async def aclose(self) -> None:
        await self._twilio.aclose()


def _segments(reported: str | None, body: str) -> int:
    # Twilio's own count is what it bills; our count stands in when it gives none.
    try:
        return int(reported) if reported else sms_segments(body)
    except ValueError:
        return sms_segments(body)
