"""Sandbox providers: record what would be sent, send nothing.

They make the embedded mode work with no credentials. Each accepted send is
appended as one JSON line to ``<outbox_dir>/<channel>.jsonl``.

Like Twilio's magic test numbers, some recipients fail on purpose so that
retries and fallbacks can be seen without a real provider:

* a phone number starting ``+886900000``: ending ``001`` is an invalid number
  (permanent); ending ``01N`` (N = 1..9) fails transiently on its first N
  attempts, then succeeds;
* an email address or push token containing ``fail-permanent`` fails for
  good; one containing ``fail-transient-N`` fails on its first N attempts.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from channels.base import (
    Channel,
    Message,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
)
from channels.registry import register

__all__ = ["SandboxChannel"]

_MAGIC_PHONE = re.compile(r"^\+886900000(?P<tail>\d{3})$")
_TRANSIENT_TEXT = re.compile(r"fail-transient-(?P<n>\d+)")
_write_lock = threading.Lock()


def _scripted_failure(recipient: str, attempt: int) -> None:
    """Raise the failure a magic recipient asks for, if any."""
    phone = _MAGIC_PHONE.match(recipient)
    if phone:
        tail = phone["tail"]
        if tail == "001":
            raise PermanentChannelError(
                "sandbox: invalid number", code="21211", rejected=(recipient,)
            )
        if tail.startswith("01") and attempt <= int(tail[2]):
            raise TransientChannelError("sandbox: provider busy", code="503")
        return
    if "fail-permanent" in recipient:
        raise PermanentChannelError(
            "sandbox: recipient refused", code="rejected", rejected=(recipient,)
        )
    transient = _TRANSIENT_TEXT.search(recipient)
    if transient and attempt <= int(transient["n"]):
        raise TransientChannelError("sandbox: provider busy", code="503")


class SandboxChannel(Channel):
    """Record the message in a JSON-lines file and report it sent."""

    provider: ClassVar[str] = "sandbox"
    channel: ClassVar[str] = "sandbox"
    final_status: ClassVar[str] = "delivered"

    def __init__(self, outbox_dir: Path | str) -> None:
        self.outbox_dir = Path(outbox_dir)

    async def send(self, message: Message) -> SendResult:
        if not message.to:
            raise PermanentChannelError("no recipient", code="no_recipient")
        accepted: list[str] = []
        rejected: list[str] = []
        first_error: PermanentChannelError | None = None
        for recipient in message.to:
            try:
                _scripted_failure(recipient, message.attempt)
            except PermanentChannelError as exc:
                rejected.append(recipient)
                first_error = first_error or exc
            else:
                accepted.append(recipient)
        if not accepted:
            assert first_error is not None
            raise first_error
        provider_id = f"sbx-{self.channel}-{uuid.uuid4().hex[:16]}"
        self._record(message, provider_id, accepted)
        return SendResult(
            provider=self.provider,
            provider_id=provider_id,
            status="delivered" if self.final_status == "delivered" else "sent",
            detail={"recipients": len(accepted)},
            rejected=tuple(rejected),
        )

    def _record(self, message: Message, provider_id: str, accepted: list[str]) -> None:
        line = json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "provider_id": provider_id,
                "delivery_id": message.delivery_id,
                "to": accepted,
                "subject": message.subject,
                "body": message.body,
                "language": message.language,
                "data": dict(message.data),
            },
            ensure_ascii=False,
        )
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        with _write_lock, (self.outbox_dir / f"{self.channel}.jsonl").open("a") as out:
            out.write(line + "\n")


@register("sms", "sandbox")
class SandboxSms(SandboxChannel):
    channel = "sms"


@register("voice", "sandbox")
class SandboxVoice(SandboxChannel):
    channel = "voice"


@register("email", "sandbox")
class SandboxEmail(SandboxChannel):
    channel = "email"
    # An SMTP server accepting a message proves no more than that.
    final_status = "sent"


@register("push", "sandbox")
class SandboxPush(SandboxChannel):
    channel = "push"


@register("postcard", "sandbox")
class SandboxPostcard(SandboxChannel):
    channel = "postcard"
    # A card handed to the printer is sent; nobody reports it delivered.
    final_status = "sent"
