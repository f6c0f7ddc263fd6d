"""Mitake SMS: the adapter against the local Mitake simulator, one case per status code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import ProxyHandler, Request, build_opener

import pytest

import channels
from channels import (
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendResult,
    TransientChannelError,
)
from channels.base import ChannelError
from channels.mitake_sms import (
    ACCOUNT_FAULT_CODES,
    MitakeSms,
    acknowledgement,
    client_id,
    parse_send_answer,
    report_for,
    to_dstaddr,
)
from channels.simulators.base import FaultMix
from channels.simulators.mitake import MitakeSimulator

USER, PASSWORD = "utility", "mitake-test-password"
MOBILE = "+886912345678"
BODY = "您的電費帳單尚未繳納，\n請儘速繳費。"


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[MitakeSimulator]:
    # One simulator for the module: stopping an http.server takes up to half a second.
    simulator = MitakeSimulator(
        username=USER, password=PASSWORD, callback_delay=0.01, stall_seconds=3.0
    )
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def sim(shared_sim: MitakeSimulator) -> MitakeSimulator:
    shared_sim.reset()
    return shared_sim


def _channel(sim: MitakeSimulator, **options: Any) -> MitakeSms:
    return MitakeSms(
        username=options.pop("username", USER),
        password=options.pop("password", PASSWORD),
        base_url=sim.base_url,
        **options,
    )


def _send(channel: MitakeSms, message: Message) -> SendResult:
    async def run() -> SendResult:
        try:
            return await channel.send(message)
        finally:
            await channel.aclose()

    return asyncio.run(run())


def _fails(channel: MitakeSms, message: Message) -> ChannelError:
    with pytest.raises(ChannelError) as caught:
        _send(channel, message)
    return caught.value


def _sms(to: str = MOBILE, body: str = BODY, **fields: Any) -> Message:
    return Message(
        delivery_id=fields.pop("delivery_id", 7), channel="sms", to=(to,), body=body, **fields
    )


def test_the_registry_builds_mitake_for_sms(sim: MitakeSimulator) -> None:
    assert "mitake" in channels.providers("sms")
    built = channels.create(
        "sms", "mitake", username=USER, password=PASSWORD, base_url=sim.base_url
    )
    assert isinstance(built, MitakeSms)


def test_an_accepted_sms_goes_out_as_mitake_wants_it(sim: MitakeSimulator) -> None:
    url = "https://notifier.example/v1/callbacks/mitake/status/tok"
    result = _send(_channel(sim), _sms(attempt=2, callback_url=url))
    [sent] = sim.messages
    assert result.provider == "mitake" and result.status == "sent"
    assert result.provider_id == sent["msgid"]
    assert sent["dstaddr"] == "0912345678"  # national form, not E.164
    assert sent["smbody"] == BODY.replace("\n", "\x06")  # Mitake's line break
    assert sent["charset"] == "utf-8"  # CharsetURL=UTF8: the Chinese arrives intact
    assert sent["clientid"] == "ntf-7"
    assert sent["response"] == url
    assert result.detail["segments"] == 1 and result.detail["account_point"] == 99_999


def test_without_callbacks_no_response_url_is_given(sim: MitakeSimulator) -> None:
    _send(_channel(sim, callback=False), _sms(callback_url="https://x.example/cb"))
    assert "response" not in sim.messages[0]


def test_the_same_send_twice_reaches_the_customer_once(sim: MitakeSimulator) -> None:
    channel = _channel(sim)
    first = _send(channel, _sms(delivery_id=11))
    again = _send(channel, _sms(delivery_id=11))
    assert len(sim.messages) == 1 and len(sim.duplicates) == 1
    assert again.provider_id == first.provider_id
    assert again.detail.get("duplicate") is True and "duplicate" not in first.detail


def test_a_retry_after_a_timeout_counted_as_an_attempt_is_still_one_sms(
    sim: MitakeSimulator,
) -> None:
    # The retry policy counts a timed-out send as an attempt; Mitake may have sent it.
    channel = _channel(sim)
    first = _send(channel, _sms(delivery_id=12, attempt=1))
    retried = _send(channel, _sms(delivery_id=12, attempt=2))
    assert [m["clientid"] for m in sim.messages] == ["ntf-12"]
    assert retried.provider_id == first.provider_id


def test_a_retry_after_a_refusal_is_sent(sim: MitakeSimulator) -> None:
    # A refused request sent nothing: Mitake has nothing to answer it with again.
    sim.account_fault = "r"
    _fails(_channel(sim), _sms(delivery_id=13, attempt=1))
    sim.account_fault = None
    _send(_channel(sim), _sms(delivery_id=13, attempt=2))
    assert [m["clientid"] for m in sim.messages] == ["ntf-13"] and not sim.duplicates


def test_other_deliveries_are_other_messages(sim: MitakeSimulator) -> None:
    channel = _channel(sim)
    _send(channel, _sms(delivery_id=14))
    _send(channel, _sms(delivery_id=15))
    assert [m["clientid"] for m in sim.messages] == ["ntf-14", "ntf-15"]


def test_an_answer_that_never_came_is_asked_again_and_sent_once(sim: MitakeSimulator) -> None:
    # Mitake took the message, then the answer stalled past our timeout: the one repeat
    # carries the same clientid, so Mitake answers the first msgid and sends nothing more.
    result = _send(_channel(sim, timeout=0.5), _sms(to="+886912377777"))
    assert len(sim.messages) == 1 and len(sim.duplicates) == 1
    assert result.provider_id == sim.messages[0]["msgid"]


@pytest.mark.parametrize(
    ("code", "kind", "rejected"),
    [
        ("c", ProviderChannelError, False),
        ("d", ProviderChannelError, False),
        ("e", ProviderChannelError, False),
        ("f", ProviderChannelError, False),
        ("h", ProviderChannelError, False),
        ("k", ProviderChannelError, False),
        ("m", ProviderChannelError, False),
        ("n", ProviderChannelError, False),
        ("p", ProviderChannelError, False),
        ("s", ProviderChannelError, False),
        ("*", TransientChannelError, False),
        ("a", TransientChannelError, False),
        ("b", TransientChannelError, False),
        ("l", TransientChannelError, False),
        ("r", TransientChannelError, False),
        ("t", PermanentChannelError, False),
        ("u", PermanentChannelError, False),
        ("v", PermanentChannelError, True),
        ("x", PermanentChannelError, False),
        ("y", PermanentChannelError, False),
    ],
)
def test_each_refusal_code_maps_to_its_error(
    sim: MitakeSimulator, code: str, kind: type[ChannelError], rejected: bool
) -> None:
    sim.account_fault = code
    error = _fails(_channel(sim), _sms())
    assert type(error) is kind
    assert error.code == f"mitake:{code}"
    if isinstance(error, PermanentChannelError):
        assert error.rejected == ((MOBILE,) if rejected else ())
    assert (code in ACCOUNT_FAULT_CODES) == ("our Mitake account" in error.reason)
    assert not sim.messages


def test_a_wrong_password_is_an_account_fault_not_the_customers(sim: MitakeSimulator) -> None:
    error = _fails(_channel(sim, password="typo"), _sms())
    assert isinstance(error, ProviderChannelError)  # the provider's circuit: no fallback
    assert error.code == "mitake:e" and error.provider == "mitake"


def test_a_number_mitake_refuses_is_rejected(sim: MitakeSimulator) -> None:
    error = _fails(_channel(sim), _sms(to="+886912399990"))
    assert isinstance(error, PermanentChannelError)
    assert error.code == "mitake:v" and error.rejected == ("+886912399990",)


def test_too_many_connections_is_retried_later(sim: MitakeSimulator) -> None:
    sim.faults = FaultMix(rate_limited=1.0)
    error = _fails(_channel(sim), _sms())
    assert isinstance(error, TransientChannelError) and error.code == "mitake:l"


def test_a_server_error_is_transient(sim: MitakeSimulator) -> None:
    sim.faults = FaultMix(server_error=1.0)
    error = _fails(_channel(sim), _sms())
    assert isinstance(error, TransientChannelError) and error.code == "mitake:http_500"


def test_an_unreachable_gateway_is_transient() -> None:
    idle = MitakeSimulator()
    idle.start()
    url = idle.base_url
    idle.stop()  # nothing listens there any more
    channel = MitakeSms(username=USER, password=PASSWORD, base_url=url, timeout=2)
    error = _fails(channel, _sms())
    assert isinstance(error, TransientChannelError) and error.code == "mitake:network"


def test_a_body_beyond_the_accounts_limit_is_refused_before_sending(sim: MitakeSimulator) -> None:
    error = _fails(_channel(sim, max_length=70), _sms(body="電" * 71))
    assert isinstance(error, PermanentChannelError) and error.code == "mitake:too_long"
    assert "71 characters exceed Mitake's 70" in error.reason
    assert not sim.messages


@pytest.mark.parametrize(
    ("number", "dstaddr", "code", "rejected"),
    [
        ("+886912345678", "0912345678", None, False),
        ("+886987654321", "0987654321", None, False),
        ("+886223456789", None, "mitake:not_mobile", True),  # a Taipei landline
        ("+15005550006", None, "mitake:not_taiwan", False),  # fine, but not Mitake's to text
        ("+8869123", None, "mitake:bad_number", True),
        ("not a number", None, "mitake:bad_number", True),
    ],
)
def test_e164_numbers_become_mitakes_national_form(
    number: str, dstaddr: str | None, code: str | None, rejected: bool
) -> None:
    if dstaddr is not None:
        assert to_dstaddr(number) == dstaddr
        return
    with pytest.raises(PermanentChannelError) as caught:
        to_dstaddr(number)
    assert caught.value.code == code
    assert caught.value.rejected == ((number,) if rejected else ())
    assert number not in caught.value.reason or len(number) <= 7  # masked


def test_a_client_id_too_long_for_mitake_is_refused_at_construction(sim: MitakeSimulator) -> None:
    with pytest.raises(ValueError, match="36"):
        _channel(sim, client_id_prefix="a-prefix-far-too-long-")
    assert client_id("ntf-", 123) == "ntf-123"


@pytest.mark.parametrize(
    ("flag", "report"),
    [
        ("0", "report"),
        ("1", "report"),
        ("2", "report"),
        ("4", "delivered"),
        ("5", "failed"),
        ("6", "undelivered"),
        ("7", "failed"),
        ("8", "undelivered"),
        ("9", "failed"),
        ("?", "report"),
    ],
)
def test_delivery_statuses_map_to_our_reports(flag: str, report: str) -> None:
    assert report_for(flag) == report


def test_a_send_answer_is_read_block_by_block() -> None:
    [block] = parse_send_answer(
        "[ntf-1-1]\r\nmsgid=#0000000013\r\nstatuscode=1\r\nAccountPoint=\r\n"
    )
    assert (block.msgid, block.statuscode, block.account_point) == ("0000000013", "1", None)
    assert block.client_key == "ntf-1-1" and not block.duplicate


class Receiver:
    """A report endpoint: records each GET, acknowledges as Mitake wants unless told not to."""

    def __init__(self, *, acknowledge: bool = True) -> None:
        self.reports: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fields = dict(parse_qsl(urlsplit(self.path).query))
                receiver.reports.append(fields)
                reply = acknowledgement(fields["msgid"]) if acknowledge else "OK"
                data = reply.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/callbacks/mitake/status/t"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("to", "flag", "statusstr"),
    [
        (MOBILE, "4", "DELIVRD"),
        ("+886912300006", "6", "UNDELIV"),
        ("+886912300008", "8", "EXPIRED"),
        ("+886912300005", "5", "REJECTD"),
    ],
)
def test_the_report_comes_to_the_response_url(
    sim: MitakeSimulator, to: str, flag: str, statusstr: str
) -> None:
    receiver = Receiver()
    try:
        result = _send(_channel(sim), _sms(to=to, callback_url=receiver.url))
        sim.wait_callbacks()
    finally:
        receiver.close()
    [report] = receiver.reports
    assert report["msgid"] == result.provider_id
    assert (report["StatusFlag"], report["statusstr"]) == (flag, statusstr)
    assert report["dstaddr"] == to_dstaddr(to) and len(report["donetime"]) == 14
    assert [c["acked"] for c in sim.callbacks_sent] == [True]


def test_a_report_not_acknowledged_is_posted_again(sim: MitakeSimulator) -> None:
    receiver = Receiver(acknowledge=False)
    try:
        _send(_channel(sim), _sms(callback_url=receiver.url))
        sim.wait_callbacks()
    finally:
        receiver.close()
    assert len(receiver.reports) == sim.report_tries == 3
    assert not any(c["acked"] for c in sim.callbacks_sent)


def test_the_status_query_says_what_became_of_a_message(sim: MitakeSimulator) -> None:
    channel = _channel(sim)

    async def run() -> tuple[str, str]:
        try:
            sent = await channel.send(_sms(to="+886912300008"))
            await asyncio.to_thread(sim.wait_callbacks)
            return await channel.query(sent.provider_id), await channel.query("0000000001")
        finally:
            await channel.aclose()

    assert asyncio.run(run()) == ("8", "z")


def test_a_status_query_with_bad_credentials_is_an_account_fault(sim: MitakeSimulator) -> None:
    channel = _channel(sim, password="typo")

    async def run() -> str:
        try:
            return await channel.query("0000000001")
        finally:
            await channel.aclose()

    with pytest.raises(ProviderChannelError) as caught:
        asyncio.run(run())
    assert caught.value.code == "mitake:e"


def test_the_simulator_reads_and_answers_big5_by_default(sim: MitakeSimulator) -> None:
    # Mitake's default charset is Big5: a client that names none must encode so.
    form = {"username": USER, "password": PASSWORD, "dstaddr": "0912345678", "smbody": "電費"}
    data = urlencode(form, encoding="big5").encode()
    request = Request(sim.base_url + "/api/mtk/SmSend", data=data, method="POST")
    with build_opener(ProxyHandler({})).open(request, timeout=5) as answer:
        assert "big5" in answer.headers["Content-Type"]
        text = answer.read().decode("big5")
    assert "statuscode=1" in text
    assert sim.messages[0]["smbody"] == "電費" and sim.messages[0]["charset"] == "big5"


@pytest.mark.parametrize("text", ["<html>maintenance</html>", "[1]\nstatuscode=1\n"])
def test_an_answer_that_names_no_message_is_asked_again_later(text: str) -> None:
    # No msgid to follow: whether it went out is unknown, so it is transient, and the
    # retry's clientid makes Mitake answer with the first msgid if it did go out.
    data = text.encode()

    class Fixed(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fixed)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        error = _fails(MitakeSms(username=USER, password=PASSWORD, base_url=base), _sms())
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(error, TransientChannelError) and error.code == "mitake:answer"
