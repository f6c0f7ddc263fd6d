"""bench/_fakes.py, the benchmarks' lean provider fakes, driven by the notifier's own channels.

The real SDKs (twilio, firebase-admin, aiosmtplib through channels/) send to
the fakes running as the bench runs them, in a process of their own; the fakes
must answer what those SDKs parse, post Twilio's two status callbacks signed
as Twilio signs them, and count each send under its delivery for the bench's
duplicate check.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from bench._processes import Processes, read_exports, read_tally
from channels import Message
from channels.fcm_push import FcmPush
from channels.sms import sms_segments
from channels.smtp_email import SmtpEmail
from channels.twilio_sms import TwilioSms
from notifier.deliveries.callback_tokens import issue
from notifier.settings import PROJECT_ROOT

FAKES = [sys.executable, str(PROJECT_ROOT / "bench" / "_fakes.py"), "--latency-ms", "20",
         "--callback-delay", "0.01"]  # fmt: skip
BODY_ZH = "【電費通知】王小明您好，電號012****7890有1期電費共NT$1,830未繳，請儘速繳費。"


class Fakes:
    def __init__(self, process: subprocess.Popen[bytes], settings: dict[str, str]) -> None:
        self.process = process
        self.settings = settings

    def __getitem__(self, name: str) -> str:
        return self.settings[f"NOTIFIER_{name}"]

    def tally(self) -> tuple[dict[str, Any], list[list[Any]]]:
        lines = read_tally(self.process)
        return json.loads(lines["counts"]), json.loads(lines["sends"])


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    procs = Processes(Path(tmp_path_factory.mktemp("fakes")))
    process = procs.start("fakes", FAKES, dict(os.environ), stdout=subprocess.PIPE)
    try:
        yield Fakes(process, read_exports(process, ["NOTIFIER_SMTP__STARTTLS"]))
    finally:
        procs.close()


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout=20)

    return asyncio.run(bounded())


def token(delivery_id: int) -> str:
    return issue(b"k" * 32, delivery_id, purpose="status", now=datetime.now(UTC))


async def receive_callbacks(fakes: Fakes, message: Message, count: int) -> list[dict[str, Any]]:
    """Send ``message`` by SMS with a callback URL served here; the first ``count`` callbacks."""
    received: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def status(request: web.Request) -> web.Response:
        form = dict(await request.post())
        received.append({"url": str(request.url), "form": form, "headers": request.headers})
        if len(received) >= count:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/v1/callbacks/twilio/status/{token}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/v1/callbacks/twilio/status/{token(message.delivery_id)}"
    sms = TwilioSms(
        account_sid=fakes["TWILIO__ACCOUNT_SID"],
        auth_token=fakes["TWILIO__AUTH_TOKEN"],
        from_number=fakes["TWILIO__FROM_NUMBER"],
        base_url=fakes["TWILIO__BASE_URL"],
    )
    try:
        result = await sms.send(
            Message(
                delivery_id=message.delivery_id, channel="sms", to=message.to,
                body=message.body, callback_url=url,
            )
        )  # fmt: skip
        assert result.provider_id.startswith("SM")
        assert result.detail["segments"] == sms_segments(message.body)
        assert result.detail["twilio_status"] == "queued"
        await done.wait()
    finally:
        await sms.aclose()
        await runner.cleanup()
    return received


def test_an_sms_is_accepted_then_reported_sent_and_delivered_signed_as_twilio_signs(
    fakes: Fakes,
) -> None:
    message = Message(delivery_id=7001, channel="sms", to=("+886912345678",), body=BODY_ZH)

    received = run(receive_callbacks(fakes, message, 2))

    assert [r["form"]["MessageStatus"] for r in received] == ["sent", "delivered"]
    validator = RequestValidator(fakes["TWILIO__AUTH_TOKEN"])
    for report in received:
        assert report["form"]["To"] == "+886912345678"
        assert report["form"]["From"] == fakes["TWILIO__FROM_NUMBER"]
        assert report["form"]["MessageSid"].startswith("SM")
        signature = report["headers"]["X-Twilio-Signature"]
        assert validator.validate(report["url"], report["form"], signature)
    counts, sends = fakes.tally()
    assert [7001, "+886912345678", 1] in sends
    assert counts["callbacks_answered"]["204"] >= 2
    assert counts["callbacks_pending"] == 0


def test_the_ambiguous_send_lookup_finds_nothing_and_does_not_fail(fakes: Fakes) -> None:
    sms = TwilioSms(
        account_sid=fakes["TWILIO__ACCOUNT_SID"],
        auth_token=fakes["TWILIO__AUTH_TOKEN"],
        from_number=fakes["TWILIO__FROM_NUMBER"],
        base_url=fakes["TWILIO__BASE_URL"],
    )
    message = Message(delivery_id=7002, channel="sms", to=("+886912345679",), body="hi")

    async def look() -> Any:
        try:
            return await sms.lookup(message, since=datetime.now(UTC) - timedelta(minutes=5))
        finally:
            await sms.aclose()

    assert run(look()) == []


def test_a_push_is_accepted_and_counted_under_its_delivery(fakes: Fakes) -> None:
    push = FcmPush(
        project_id=fakes["FCM__PROJECT_ID"],
        access_token=fakes["FCM__ACCESS_TOKEN"],
        base_url=fakes["FCM__BASE_URL"],
        sdk_retries=False,
        timeout=5.0,
    )
    message = Message(
        delivery_id=7003, channel="push", to=("device-token-7003",), subject="電費繳費通知",
        body="您的電費 NT$1,830 尚未繳納", data={"delivery_id": "7003"},
    )  # fmt: skip

    async def send() -> Any:
        try:
            return await push.send(message)
        finally:
            await push.aclose()

    result = run(send())

    assert result.provider_id.startswith(f"projects/{fakes['FCM__PROJECT_ID']}/messages/")
    _, sends = fakes.tally()
    assert [7003, "device-token-7003", 1] in sends


def test_two_emails_on_one_connection_are_counted_under_their_deliveries(fakes: Fakes) -> None:
    email = SmtpEmail(
        host=fakes["SMTP__HOST"], port=int(fakes["SMTP__PORT"]), starttls=False,
        from_address="notices@utility.example", from_name="台灣電力公司", timeout=5.0,
    )  # fmt: skip

    async def send() -> None:
        try:
            for delivery_id in (7004, 7005):
                await email.send(
                    Message(
                        delivery_id=delivery_id, channel="email", to=("wang@example.com",),
                        subject="電費催繳通知", body="您的電費 1,830 元尚未繳納。", name="王小明",
                    )
                )  # fmt: skip
        finally:
            await email.aclose()

    run(send())

    _, sends = fakes.tally()
    assert [7004, "wang@example.com", 1] in sends
    assert [7005, "wang@example.com", 1] in sends


def test_pipelined_requests_are_answered_in_order_on_one_connection(fakes: Fakes) -> None:
    host, _, port = fakes["FCM__BASE_URL"].removeprefix("http://").partition(":")
    path = f"/v1/projects/{fakes['FCM__PROJECT_ID']}/messages:send"
    auth = f"Bearer {fakes['FCM__ACCESS_TOKEN']}"
    requests = b""
    for n in range(3):
        body = json.dumps({"message": {"fid": f"pipelined-{n}"}}).encode()
        requests += (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    wrong = b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"

    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(requests + wrong)
        answer = b""
        while answer.count(b"HTTP/1.1 ") < 4 or not answer.endswith(b"}"):
            answer += sock.recv(65536)

    # Each answer names the push it took: they come back in the order sent.
    assert re.findall(rb"HTTP/1\.1 (\d{3})", answer) == [b"200", b"200", b"200", b"404"]
    numbers = [int(n) for n in re.findall(rb"messages/0:(\d{16})", answer)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
