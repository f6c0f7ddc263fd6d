"""The ceiling of bench/e2e.py: the same mix of sends from a bare asyncio client.

SMS (Twilio's Messages endpoint) and pushes (FCM v1 ``messages:send``) go
over one aiohttp session, emails over SMTP connections opened before the
clock starts and reused, all at once and to the simulators the notifier
used; no database, no broker. What it reaches is what the simulators and
this machine allow.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib

__all__ = ["SMS_BODY", "Tally", "Targets", "flood"]

SMS_BODY = (
    "【電費通知】王小明您好，電號012****7890有1期電費共NT$1,830未繳，最早期限115年11月20日。\n"
    "https://pay.utility.example/bill/GUOISUMX64ZOYDGQ\n客服1911"
)
PUSH_TITLE = "電費帳單尚未繳納"
PUSH_BODY = (
    "王小明您好，電號012****7890有電費尚未繳納：115年9月電費NT$1,830，繳費期限115年11月20日。"
    "於App或線上繳費：https://pay.utility.example/bill/GUOISUMX64ZOYDGQ"
)


@dataclass(frozen=True)
class Targets:
    """The simulators' endpoints and credentials, from the settings they printed."""

    settings: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.settings[f"NOTIFIER_{name}"]

    @property
    def twilio_messages(self) -> str:
        sid = self["TWILIO__ACCOUNT_SID"]
        return f"{self['TWILIO__BASE_URL']}/2010-04-01/Accounts/{sid}/Messages.json"

    @property
    def fcm_send(self) -> str:
        return f"{self['FCM__BASE_URL']}/v1/projects/{self['FCM__PROJECT_ID']}/messages:send"


@dataclass
class Tally:
    """Sends per channel, and when the last one of each finished."""

    started: float = 0.0
    sent: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    last: dict[str, float] = field(default_factory=dict)

    def record(self, channel: str, ok: bool) -> None:
        (self.sent if ok else self.errors)[channel] += 1
        self.last[channel] = time.perf_counter()

    def rate(self, channel: str | None = None) -> float:
        if channel is None:
            return sum(self.sent.values()) / (max(self.last.values()) - self.started)
        return self.sent[channel] / (self.last[channel] - self.started)


async def flood(
    targets: Targets,
    count: int,
    http_slots: int,
    smtp_connections: int,
    *,
    channels: tuple[str, ...] = ("sms", "push", "email"),
    status_callback: str | None = None,
) -> Tally:
    """``count`` SMS and pushes over aiohttp, ``count`` emails over reused SMTP connections.

    ``status_callback``: the URL each SMS names for Twilio's status reports (none by default).
    """
    tally = Tally()
    http = [c for c in ("sms", "push") if c in channels]
    http_jobs = ((channel, i) for i in range(count) for channel in http)
    emails = iter(range(count if "email" in channels else 0))
    smtp_connections = smtp_connections if "email" in channels else 0
    http_slots = http_slots if http else 0
    raw_email = _email_bytes()
    connector = aiohttp.TCPConnector(limit=max(1, http_slots))
    timeout = aiohttp.ClientTimeout(total=60)
    # Connected before the clock starts: the ceiling reuses its connections.
    smtps = await asyncio.gather(*(_smtp_connect(targets) for _ in range(smtp_connections)))
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tally.started = time.perf_counter()
            await asyncio.gather(
                *(
                    _http_sender(session, targets, http_jobs, tally, status_callback)
                    for _ in range(http_slots)
                ),
                *(_smtp_sender(smtp, emails, raw_email, tally) for smtp in smtps),
            )
    finally:
        await asyncio.gather(*(smtp.quit() for smtp in smtps), return_exceptions=True)
    return tally


async def _http_sender(
    session: aiohttp.ClientSession,
    targets: Targets,
    jobs: Iterator[tuple[str, int]],
    tally: Tally,
    status_callback: str | None = None,
) -> None:
    credentials = f"{targets['TWILIO__ACCOUNT_SID']}:{targets['TWILIO__AUTH_TOKEN']}"
    basic = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    bearer = {"Authorization": f"Bearer {targets['FCM__ACCESS_TOKEN']}"}
    sms = {"To": "+886912345678", "From": targets["TWILIO__FROM_NUMBER"], "Body": SMS_BODY}
    if status_callback:
        sms["StatusCallback"] = status_callback
    for channel, i in jobs:  # one generator shared by the senders
        if channel == "sms":
            ok = await _post(session, targets.twilio_messages, basic, data=sms)
        else:
            push = {
                "token": f"token-ceiling-{i}",
                "notification": {"title": PUSH_TITLE, "body": PUSH_BODY},
                "data": {"type": "bill.unpaid", "account_no": f"{i:011d}"},
            }
            ok = await _post(session, targets.fcm_send, bearer, json={"message": push})
        tally.record(channel, ok)


async def _post(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], **body: Any
) -> bool:
    """One provider call; whether it was accepted (200 or 201)."""
    for _ in range(2):  # a keep-alive connection the server had closed: once more
        try:
            async with session.post(url, headers=headers, **body) as reply:
                await reply.read()
                return reply.status in (200, 201)
        except aiohttp.ClientConnectionError:
            continue
    return False


async def _smtp_connect(targets: Targets) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(
        hostname=targets["SMTP__HOST"], port=int(targets["SMTP__PORT"]), start_tls=False
    )
    await smtp.connect()
    return smtp


async def _smtp_sender(
    smtp: aiosmtplib.SMTP, jobs: Iterator[int], raw: bytes, tally: Tally
) -> None:
    for i in jobs:  # one iterator shared by the connections
        try:
            await smtp.sendmail("notices@utility.example", [f"c{i:011d}@example.com"], raw)
            ok = True
        except aiosmtplib.SMTPException:
            ok = False
        tally.record("email", ok)


def _email_bytes() -> bytes:
    """One notice as the email adapter shapes it (text and HTML), serialized once."""
    message = EmailMessage()
    message["Subject"] = "電費帳單尚未繳納（電號 01234567890）"
    message["From"] = "notices@utility.example"
    message["To"] = "customer@example.com"
    text = PUSH_BODY + "\n\n如有疑問，請洽客服專線 1911。\n本信件由系統自動發送，請勿直接回覆。"
    message.set_content(text)
    message.add_alternative(f"<html><body><p>{text}</p></body></html>", subtype="html")
    return message.as_bytes()
