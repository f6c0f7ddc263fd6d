"""Twilio SMS and voice: the real twilio SDK against the local Twilio simulator."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.request_validator import RequestValidator

import channels
from channels import (
    AmbiguousChannelError,
    Channel,
    ChannelError,
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendResult,
    TransientChannelError,
    speech,
)
from channels.simulators.base import FaultMix
from channels.simulators.twilio import TwilioSimulator
from channels.sms import sms_segments
from channels.twilio_common import to_channel_error
from channels.twilio_sms import TwilioSms
from channels.twilio_voice import TwilioVoice, gather_response, voicemail
from tests.support.raw_peer import RawPeer

SID = "AC" + "1" * 32
TOKEN = "test-auth-token"
FROM = "+15005550006"
DIAL = "+886223456789"
GATHER_URL = "https://notifier.example/v1/callbacks/twilio/gather"
BODY_ZH = "您的電費帳單尚未繳納，請儘速繳費。" * 6  # 102 characters: two UCS-2 parts
assert len(BODY_ZH) > 70


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[TwilioSimulator]:
    # One simulator for the module: stopping an http.server takes up to half a second.
    simulator = TwilioSimulator(account_sid=SID, auth_token=TOKEN, callback_delay=0.01)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def sim(shared_sim: TwilioSimulator) -> TwilioSimulator:
    shared_sim.reset()
    return shared_sim


def sms(base_url: str, **options: Any) -> TwilioSms:
    settings: dict[str, Any] = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "from_number": FROM,
        "base_url": base_url,
    }
    return TwilioSms(**(settings | options))


def voice(base_url: str, **options: Any) -> TwilioVoice:
    settings: dict[str, Any] = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "from_number": FROM,
        "dial_number": DIAL,
        "gather_url": GATHER_URL,
        "base_url": base_url,
    }
    return TwilioVoice(**(settings | options))


def message(channel: str, to: str = "+886912345678", **fields: Any) -> Message:
    return Message(delivery_id=42, channel=channel, to=(to,), body=BODY_ZH, **fields)


def send(channel: Channel, *messages: Message) -> list[SendResult]:
    """Send inside one event loop, then close the channel's session in it."""

    async def go() -> list[SendResult]:
        try:
            return [await channel.send(m) for m in messages]
        finally:
            await channel.aclose()

    return asyncio.run(go())


def send_one(channel: Channel, one: Message) -> SendResult:
    return send(channel, one)[0]


def failure(channel: Channel, one: Message) -> ChannelError:
    with pytest.raises(ChannelError) as caught:
        send_one(channel, one)
    return caught.value


# --- accepted sends -------------------------------------------------------------------------


def test_sms_is_accepted_with_a_sid_and_two_segments_for_a_long_chinese_body(
    sim: TwilioSimulator,
) -> None:
    result = send_one(sms(sim.base_url), message("sms"))

    assert result.provider == "twilio"
    assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_id)
    assert result.status == "sent"
    assert result.detail == {"segments": 2, "twilio_status": "queued"}
    [received] = sim.messages
    assert received["Sid"] == result.provider_id
    assert (received["To"], received["From"], received["Body"]) == ("+886912345678", FROM, BODY_ZH)
    assert "StatusCallback" not in received


def test_sms_through_a_messaging_service_is_accepted_without_from(sim: TwilioSimulator) -> None:
    channel = sms(sim.base_url, from_number="", messaging_service_sid="MG" + "2" * 32)

    result = send_one(channel, message("sms"))

    assert result.detail["twilio_status"] == "accepted"
    [received] = sim.messages
    assert received["MessagingServiceSid"] == "MG" + "2" * 32
    assert "From" not in received


def test_one_channel_sends_several_messages_on_one_loop(sim: TwilioSimulator) -> None:
    results = send(sms(sim.base_url), message("sms"), message("sms", "+886987654321"))

    assert len({r.provider_id for r in results}) == 2
    assert [m["To"] for m in sim.messages] == ["+886912345678", "+886987654321"]


def test_the_registry_builds_both_twilio_providers(sim: TwilioSimulator) -> None:
    built = channels.create(
        "sms", "twilio", account_sid=SID, auth_token=TOKEN, from_number=FROM, base_url=sim.base_url
    )
    assert isinstance(built, TwilioSms)
    assert "twilio" in channels.providers("voice")


def test_a_call_carries_the_twiml_and_asks_for_every_status_event(sim: TwilioSimulator) -> None:
    channel = voice(sim.base_url)
    notice = message("voice", callback_url="http://127.0.0.1:9/unused")

    result = send_one(channel, notice)

    assert re.fullmatch(r"CA[0-9a-f]{32}", result.provider_id)
    assert result.status == "sent"
    [received] = sim.calls
    assert received["Twiml"] == channel.twiml(notice)
    assert received["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert "MachineDetection" not in received  # no machine_url: nowhere to report to


def test_a_call_asks_for_async_answering_machine_detection(sim: TwilioSimulator) -> None:
    notice = message("voice", machine_url="http://127.0.0.1:9/machine")

    send_one(voice(sim.base_url), notice)

    [received] = sim.calls
    assert received["MachineDetection"] == "DetectMessageEnd"
    assert received["AsyncAmd"] == "true"
    assert received["AsyncAmdStatusCallback"] == "http://127.0.0.1:9/machine"
    assert received["AsyncAmdStatusCallbackMethod"] == "POST"


def test_a_voicemail_replaces_the_live_calls_twiml(sim: TwilioSimulator) -> None:
    channel = voice(sim.base_url)

    async def go() -> None:
        try:
            result = await channel.send(message("voice"))
            await channel.leave_voicemail(result.provider_id, "Please call us.", "en")
        finally:
            await channel.aclose()

    asyncio.run(go())

    [call], [update] = sim.calls, sim.call_updates
    assert update["Sid"] == call["Sid"]
    assert update["Twiml"] == voicemail("Please call us.", language="en")


# --- every error class, for both channels ----------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    name: str
    to: str = "+886912345678"
    faults: FaultMix = field(default_factory=FaultMix)
    error: type[ChannelError] = PermanentChannelError
    code: str | None = None
    rejected: bool = False
    opt_out: bool = False
    retry_after: float | None = None
    account_refusal: int | None = None


ERROR_CASES = [
    ErrorCase("invalid number", to="+886900021211", code="21211", rejected=True),
    ErrorCase("not a mobile", to="+886222021614", code="21614", rejected=True),
    ErrorCase("unreachable number", to="+886900021217", code="21217", rejected=True),
    ErrorCase("replied STOP", to="+886912021610", code="21610", rejected=True, opt_out=True),
    ErrorCase(
        "rate limited",
        faults=FaultMix(rate_limited=1.0),
        error=TransientChannelError,
        code="20429",
        retry_after=1.0,
    ),
    ErrorCase(
        "server error", faults=FaultMix(server_error=1.0), error=TransientChannelError, code="20500"
    ),
    # Our account, credentials or sender: the provider's fault, never the number's.
    *(
        ErrorCase(name, error=ProviderChannelError, code=str(code), account_refusal=code)
        for name, code in (
            ("wrong credentials", 20003),
            ("account not active", 20005),
            ("invalid From number", 21212),
            ("From not message-capable", 21606),
        )
    ),
]


@pytest.mark.parametrize("kind", ["sms", "voice"])
@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_twilio_errors_map_to_transient_permanent_or_the_providers(
    sim: TwilioSimulator, kind: str, case: ErrorCase
) -> None:
    sim.reset(case.faults)
    sim.refuse_account(case.account_refusal)
    channel = sms(sim.base_url) if kind == "sms" else voice(sim.base_url)

    error = failure(channel, message(kind, case.to))

    assert type(error) is case.error
    assert error.code == case.code
    assert isinstance(error.__cause__, TwilioRestException)
    if isinstance(error, PermanentChannelError):
        assert error.rejected == ((case.to,) if case.rejected else ())
        assert error.opt_out is case.opt_out
    elif isinstance(error, TransientChannelError):
        assert error.retry_after == case.retry_after
    assert sim.messages == [] and sim.calls == []


def test_a_wrong_auth_token_is_the_providers_fault_and_blames_nobody(
    sim: TwilioSimulator,
) -> None:
    error = failure(sms(sim.base_url, auth_token="not-the-token"), message("sms"))

    assert type(error) is ProviderChannelError
    assert error.code == "20003"
    assert not isinstance(error, PermanentChannelError), "no fallback, no number blamed"


def test_a_twilio_that_refuses_connections_is_transient() -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    for channel in (sms(base_url), voice(base_url)):
        error = failure(channel, message(channel.channel))
        assert isinstance(error, TransientChannelError)
        assert isinstance(error.__cause__, OSError)


def test_a_twilio_slower_than_the_timeout_is_ambiguous(sim: TwilioSimulator) -> None:
    sim.reset(FaultMix(latency_ms=300))

    error = failure(sms(sim.base_url, timeout=0.1), message("sms"))

    assert isinstance(error, AmbiguousChannelError)
    assert isinstance(error.__cause__, TimeoutError)
    # The request still lands: a retry after a timeout would send the SMS twice.
    deadline = time.monotonic() + 2
    while not sim.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sim.messages) == 1


# --- did the request reach Twilio? one row per way a connection fails -----------------------


@dataclass(frozen=True)
class WireCase:
    name: str
    peer: str
    """``refused``, ``closes``, ``resets``, ``stalls`` (the simulator
    takes the send and answers late) or ``drops`` (it holds the answer of a send it drops)."""
    error: type[ChannelError]
    reached: bool
    """Whether the request reached the peer."""


WIRE_CASES = [
    WireCase("connection refused", "refused", TransientChannelError, reached=False),
    WireCase("disconnect after the request", "closes", AmbiguousChannelError, reached=True),
    WireCase("reset after the request", "resets", AmbiguousChannelError, reached=True),
    WireCase("read timeout after accept", "stalls", AmbiguousChannelError, reached=True),
    WireCase("read timeout, send dropped", "drops", AmbiguousChannelError, reached=True),
]


@pytest.mark.parametrize("kind", ["sms", "voice"])
@pytest.mark.parametrize("case", WIRE_CASES, ids=lambda c: c.name)
def test_a_failure_after_the_request_left_is_ambiguous_before_it_transient(
    sim: TwilioSimulator, kind: str, case: WireCase
) -> None:
    raw: RawPeer | None = None
    if case.peer in ("stalls", "drops"):
        sim.stall_next(accept=case.peer == "stalls")
        base_url = sim.base_url
    elif case.peer == "refused":
        with socket.socket() as probe:  # a port nobody listens on once closed
            probe.bind(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    else:
        raw = RawPeer(case.peer)
        base_url = raw.base_url
    channel = sms(base_url, timeout=0.5) if kind == "sms" else voice(base_url, timeout=0.5)
    try:
        error = failure(channel, message(kind))
    finally:
        if raw is not None:
            raw.close()

    assert type(error) is case.error, f"{error!r} from {error.__cause__!r}"
    if raw is not None:
        assert (raw.requests == 1) is case.reached
    if case.peer in ("stalls", "drops"):
        accepted = sim.messages if kind == "sms" else sim.calls
        assert len(accepted) == (1 if case.peer == "stalls" else 0)


def test_a_lookup_finds_the_stalled_sms_and_only_it(sim: TwilioSimulator) -> None:
    channel = sms(sim.base_url, timeout=0.5)
    other = Message(delivery_id=7, channel="sms", to=("+886912345678",), body="另一則通知")
    since = datetime.now(UTC)

    async def go() -> tuple[list[SendResult], list[SendResult]]:
        try:
            await channel.send(other)  # the same number, another text: not this send
            sim.stall_next()
            with pytest.raises(AmbiguousChannelError):
                await channel.send(message("sms"))
            found = await channel.lookup(message("sms"), since=since)
            elsewhere = await channel.lookup(message("sms", to="+886987654321"), since=since)
            return list(found or ()), list(elsewhere or ())
        finally:
            await channel.aclose()

    found, elsewhere = asyncio.run(go())

    stalled = next(m for m in sim.messages if m["Body"] == BODY_ZH)
    assert [r.provider_id for r in found] == [stalled["Sid"]]
    assert found[0].detail["found_by"] == "lookup"
    assert elsewhere == []


def test_a_lookup_of_a_dropped_sms_or_call_finds_nothing(sim: TwilioSimulator) -> None:
    since = datetime.now(UTC)
    for channel in (sms(sim.base_url, timeout=0.5), voice(sim.base_url, timeout=0.5)):
        sim.stall_next(accept=False)

        async def go(channel: Channel = channel) -> Sequence[SendResult] | None:
            try:
                with pytest.raises(AmbiguousChannelError):
                    await channel.send(message(channel.channel))
                return await channel.lookup(message(channel.channel), since=since)
            finally:
                await channel.aclose()

        assert asyncio.run(go()) == []


def test_a_lookup_finds_a_stalled_call_to_that_number_since_the_attempt(
    sim: TwilioSimulator,
) -> None:
    channel = voice(sim.base_url, timeout=0.5)
    sim.stall_next()

    async def go() -> tuple[Sequence[SendResult] | None, Sequence[SendResult] | None]:
        try:
            since = datetime.now(UTC)
            with pytest.raises(AmbiguousChannelError):
                await channel.send(message("voice"))
            later = datetime.now(UTC) + timedelta(minutes=10)
            return (
                await channel.lookup(message("voice"), since=since),
                await channel.lookup(message("voice"), since=later),
            )
        finally:
            await channel.aclose()

    found, too_late = asyncio.run(go())

    [call] = sim.calls
    assert [r.provider_id for r in found or ()] == [call["Sid"]]
    assert too_late == [], "a call placed before the attempt is not this attempt's"


def test_a_body_over_twilios_limit_is_refused_before_sending(sim: TwilioSimulator) -> None:
    error = failure(sms(sim.base_url), Message(1, "sms", ("+886912345678",), "x" * 1601))

    assert isinstance(error, PermanentChannelError)
    assert error.code == "21617"
    assert sim.messages == []


@pytest.mark.parametrize(
    ("exc", "error", "rejected", "opt_out"),
    [
        (TwilioRestException(400, "/x", "bad", 21211), PermanentChannelError, ("+886",), False),
        (TwilioRestException(400, "/x", "stop", 21610), PermanentChannelError, ("+886",), True),
        (TwilioRestException(401, "/x", "auth", 20003), ProviderChannelError, None, None),
        (TwilioRestException(401, "/x", "inactive", 20005), ProviderChannelError, None, None),
        (TwilioRestException(400, "/x", "from", 21212), ProviderChannelError, None, None),
        (TwilioRestException(400, "/x", "from", 21606), ProviderChannelError, None, None),
        (TwilioRestException(403, "/x", "forbidden", 20403), ProviderChannelError, None, None),
        (TwilioServiceException("t", "auth", 401, 20003), ProviderChannelError, None, None),
        (TwilioRestException(404, "/x", "gone", 20404), PermanentChannelError, (), False),
        (TwilioRestException(429, "/x", "slow", 20429), TransientChannelError, None, None),
        (TwilioRestException(503, "/x", "down", 503), TransientChannelError, None, None),
        (TwilioServiceException("t", "down", 503, 20500), TransientChannelError, None, None),
        (TwilioServiceException("t", "slow", 429, 20429), TransientChannelError, None, None),
        (TwilioServiceException("t", "bad", 400, 21211), PermanentChannelError, ("+886",), False),
        (TwilioServiceException("t", "bad", 400, 20001), PermanentChannelError, (), False),
        (ConnectionResetError("reset"), AmbiguousChannelError, None, None),
        (aiohttp.ConnectionTimeoutError("connect"), TransientChannelError, None, None),
        (aiohttp.SocketTimeoutError("read"), AmbiguousChannelError, None, None),
        (TimeoutError(), AmbiguousChannelError, None, None),
        (aiohttp.ServerDisconnectedError(), AmbiguousChannelError, None, None),
        (aiohttp.ClientOSError(104, "reset"), AmbiguousChannelError, None, None),
        (aiohttp.ClientPayloadError("cut"), AmbiguousChannelError, None, None),
        (aiohttp.InvalidURL("x"), TransientChannelError, None, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_the_error_map_covers_rest_service_and_network_errors(
    exc: BaseException,
    error: type[ChannelError],
    rejected: tuple[str, ...] | None,
    opt_out: bool | None,
) -> None:
    mapped = to_channel_error(exc, to="+886")

    assert type(mapped) is error
    if isinstance(mapped, PermanentChannelError):
        assert (mapped.rejected, mapped.opt_out) == (rejected, opt_out)


# --- voice TwiML -----------------------------------------------------------------------------


ZH = ("Google.cmn-TW-Standard-A", "cmn-TW")
EN = ("Polly.Joanna-Neural", "en-US")


def says(element: ET.Element) -> list[tuple[str, str, str]]:
    """Every ``<Say>`` under ``element``: (voice, language, text)."""
    return [(s.get("voice", ""), s.get("language", ""), s.text or "") for s in element.iter("Say")]


def test_the_call_reads_body_and_menu_twice_in_the_zh_tw_voice_then_says_goodbye() -> None:
    root = ET.fromstring(voice("http://127.0.0.1:9").twiml(message("voice")))

    [gather] = root.findall("Gather")
    assert (gather.get("numDigits"), gather.get("action")) == ("1", GATHER_URL)
    menu = "重聽請按1。 轉接客服專線請按2。"
    assert says(gather) == [(*ZH, BODY_ZH), (*ZH, menu), (*ZH, BODY_ZH), (*ZH, menu)]
    assert [child.tag for child in gather] == ["Say", "Say", "Pause", "Say", "Say"]
    assert says(root)[-1] == (*ZH, "謝謝您的收聽，再見。")
    assert [child.tag for child in root] == ["Gather", "Say"]


def test_english_notices_use_the_en_us_voice_and_announce_the_menu() -> None:
    notice = Message(1, "voice", ("+886912345678",), "Pay <now> & save", language="en")

    twiml = voice("http://127.0.0.1:9").twiml(notice)

    root = ET.fromstring(twiml)  # escaped: it parses, and the text comes back whole
    menu = "To hear this message again, press 1. For our service line, press 2."
    assert says(root.find("Gather")) == [(*EN, "Pay <now> & save"), (*EN, menu)] * 2  # type: ignore[arg-type]


AMOUNT_EN = f"The bill is {speech.cardinal(1830)} dollars, due on 20 November 2026."


def test_an_amount_is_read_as_a_number_through_ssml_by_a_polly_or_google_voice() -> None:
    for language, voice_name in (("en", EN[0]), ("zh-TW", ZH[0])):
        notice = Message(1, "voice", ("+886912345678",), AMOUNT_EN, language=language)

        gather = ET.fromstring(voice("http://127.0.0.1:9").twiml(notice)).find("Gather")

        assert gather is not None
        say = gather.find("Say")
        assert say is not None and say.get("voice") == voice_name
        [mark] = say.findall("say-as")
        assert (mark.get("interpret-as"), mark.text) == ("cardinal", "1830")
        assert (say.text, mark.tail) == ("The bill is ", " dollars, due on 20 November 2026.")


def test_a_basic_voice_gets_the_amount_grouped_and_no_markup() -> None:
    basic = {"en": {"voice": "man", "language": "en-US"}}
    notice = Message(1, "voice", ("+886912345678",), AMOUNT_EN, language="en")

    root = ET.fromstring(voice("http://127.0.0.1:9", voices=basic).twiml(notice))

    assert root.find(".//say-as") is None
    assert says(root)[0] == ("man", "en-US", "The bill is 1,830 dollars, due on 20 November 2026.")


def test_only_the_exact_amount_mark_is_markup_anything_else_stays_escaped_text() -> None:
    script = f'Hello <say-as interpret-as="spell-out">x</say-as> & co, {speech.cardinal(-7)} due.'
    notice = Message(1, "voice", ("+886912345678",), script, language="en")

    say = ET.fromstring(voice("http://127.0.0.1:9").twiml(notice)).find("Gather/Say")

    assert say is not None
    assert [(m.get("interpret-as"), m.text) for m in say] == [("cardinal", "-7")]
    assert say.text == 'Hello <say-as interpret-as="spell-out">x</say-as> & co, '
    assert speech.plain(script) == 'Hello <say-as interpret-as="spell-out">x</say-as> & co, -7 due.'


def test_without_a_dial_number_the_menu_offers_only_a_repeat_and_2_says_goodbye() -> None:
    channel = voice("http://127.0.0.1:9", dial_number="")
    root = ET.fromstring(channel.twiml(message("voice", language="en")))
    assert {text for _, _, text in says(root)} >= {"To hear this message again, press 1."}
    assert "press 2" not in ET.tostring(root, encoding="unicode")

    pressed = ET.fromstring(
        gather_response("2", body=BODY_ZH, language="en", dial_number="", gather_url=GATHER_URL)
    )
    assert pressed.find("Dial") is None and pressed.find("Hangup") is not None


def test_no_menu_is_announced_when_no_key_can_be_pressed() -> None:
    root = ET.fromstring(voice("http://127.0.0.1:9", gather_url=None).twiml(message("voice")))
    assert root.find("Gather").get("action") is None  # type: ignore[union-attr]
    assert [text for _, _, text in says(root)].count(BODY_ZH) == 2
    assert not any("請按" in text for _, _, text in says(root))


@pytest.mark.parametrize(
    ("digit", "tags"),
    [
        ("1", ["Gather", "Say"]),
        ("2", ["Say", "Dial"]),
        ("9", ["Say", "Hangup"]),
    ],
)
def test_a_pressed_key_repeats_dials_the_e164_service_line_or_says_goodbye(
    digit: str, tags: list[str]
) -> None:
    root = ET.fromstring(
        gather_response(
            digit, body=BODY_ZH, language="zh-TW", dial_number=DIAL, gather_url=GATHER_URL
        )
    )

    assert [child.tag for child in root] == tags
    assert all((v, lang) == ZH for v, lang, _ in says(root))
    dial = root.find("Dial")
    assert (dial.text if dial is not None else None) == (DIAL if digit == "2" else None)
    assert [text for _, _, text in says(root)].count(BODY_ZH) == (2 if digit == "1" else 0)


def test_a_voicemail_is_said_once_in_the_language_voice_then_hangs_up() -> None:
    root = ET.fromstring(voicemail("Please call 1 9 1 1.", language="en"))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert says(root) == [(*EN, "Please call 1 9 1 1.")]


def test_a_language_without_a_voice_of_its_own_takes_the_first_listed() -> None:
    channel = voice("http://127.0.0.1:9", voices={"en": {"voice": EN[0], "language": EN[1]}})
    root = ET.fromstring(channel.twiml(message("voice", language="zh-TW")))
    assert {(v, lang) for v, lang, _ in says(root)} == {EN}


# --- signed status callbacks -----------------------------------------------------------------


class Receiver:
    """A tiny webhook endpoint recording each form-encoded POST."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                params = dict(parse_qsl(raw.decode()))
                receiver.received.append(
                    (self.path, params, self.headers.get("X-Twilio-Signature", ""))
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/callbacks/twilio?d=42"

    def statuses(self, key: str) -> list[str]:
        return [params[key] for _, params, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_sms_callbacks_are_signed_and_a_tampered_one_fails_validation(
    sim: TwilioSimulator, receiver: Receiver
) -> None:
    result = send_one(sms(sim.base_url), message("sms", callback_url=receiver.url))
    sim.wait_callbacks()

    assert receiver.statuses("MessageStatus") == ["sent", "delivered"]
    validator = RequestValidator(TOKEN)
    for path, params, signature in receiver.received:
        assert path == "/v1/callbacks/twilio?d=42"
        assert params["MessageSid"] == result.provider_id
        assert validator.validate(receiver.url, params, signature)
        assert not validator.validate(receiver.url, params | {"MessageStatus": "read"}, signature)
        assert not RequestValidator("other-token").validate(receiver.url, params, signature)
    assert [c["status"] for c in sim.callbacks_sent] == [204, 204]


def test_an_unreachable_handset_ends_undelivered_with_its_error_code(
    sim: TwilioSimulator, receiver: Receiver
) -> None:
    send_one(sms(sim.base_url), message("sms", "+886912030003", callback_url=receiver.url))
    sim.wait_callbacks()

    assert receiver.statuses("MessageStatus") == ["sent", "undelivered"]
    assert receiver.received[-1][1]["ErrorCode"] == "30003"


@pytest.mark.parametrize(
    ("to", "statuses"),
    [
        ("+886912345678", ["initiated", "ringing", "in-progress", "completed"]),
        ("+886912340486", ["initiated", "ringing", "busy"]),
        ("+886912340487", ["initiated", "ringing", "no-answer"]),
    ],
)
def test_call_progress_callbacks_arrive_signed_in_order(
    sim: TwilioSimulator, receiver: Receiver, to: str, statuses: list[str]
) -> None:
    result = send_one(voice(sim.base_url), message("voice", to, callback_url=receiver.url))
    sim.wait_callbacks()

    assert receiver.statuses("CallStatus") == statuses
    validator = RequestValidator(TOKEN)
    for _, params, signature in receiver.received:
        assert params["CallSid"] == result.provider_id
        assert validator.validate(receiver.url, params, signature)
    assert "CallDuration" in receiver.received[-1][1]


@pytest.mark.parametrize(
    ("to", "answered_by", "duration"),
    [
        ("+886912345678", "human", "45"),
        ("+886912340488", "machine_end_beep", "45"),
        ("+886912340489", "unknown", "45"),
        ("+886912340490", "human", "4"),
    ],
)
def test_answering_machine_results_arrive_signed_before_the_call_completes(
    sim: TwilioSimulator, receiver: Receiver, to: str, answered_by: str, duration: str
) -> None:
    machine_url = receiver.url.replace("?", "/machine?")
    notice = message("voice", to, callback_url=receiver.url, machine_url=machine_url)
    result = send_one(voice(sim.base_url), notice)
    sim.wait_callbacks()

    amds = [n for n, (path, _, _) in enumerate(receiver.received) if "/machine" in path]
    assert amds == [len(receiver.received) - 2]  # once, just before completed
    _, amd, signature = receiver.received[amds[0]]
    assert (amd["CallSid"], amd["AnsweredBy"]) == (result.provider_id, answered_by)
    assert RequestValidator(TOKEN).validate(machine_url, amd, signature)
    assert receiver.received[-1][1]["CallDuration"] == duration


# --- configuration and segments --------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "options", "setting"),
    [
        (TwilioSms, {"account_sid": ""}, "account_sid"),
        (TwilioSms, {"auth_token": ""}, "auth_token"),
        (TwilioSms, {"from_number": "", "messaging_service_sid": ""}, "from_number"),
        (TwilioSms, {"base_url": "api.twilio.com"}, "base_url"),
        (TwilioSms, {"timeout": 0}, "timeout"),
        (TwilioVoice, {"account_sid": ""}, "account_sid"),
        (TwilioVoice, {"from_number": ""}, "from_number"),
        (TwilioVoice, {"dial_number": "1911"}, "dial_number"),
        (TwilioVoice, {"voices": {}}, "voice"),
    ],
)
def test_missing_or_bad_settings_are_refused(
    factory: type[Channel], options: dict[str, Any], setting: str
) -> None:
    settings: dict[str, Any] = {"account_sid": SID, "auth_token": TOKEN, "from_number": FROM}
    with pytest.raises(ValueError, match=setting):
        factory(**(settings | options))


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters count two septets
        ("€" * 81, 2),
        ("中" * 70, 1),
        ("中" * 71, 2),
        ("中" * 100, 2),
        ("中" * 134, 2),
        ("中" * 135, 3),
        ("😀" * 35, 1),  # a surrogate pair is two UTF-16 units
        ("😀" * 36, 2),
    ],
    ids=lambda v: f"{len(v)}x{v[:1]!r}" if isinstance(v, str) else str(v),
)
def test_sms_segments_follow_gsm7_and_ucs2_limits(text: str, parts: int) -> None:
    assert sms_segments(text) == parts
