"""FCM push: the real firebase-admin SDK talking HTTP to the FCM simulator."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import firebase_admin
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import messaging

import channels
from channels import (
    AmbiguousChannelError,
    ChannelError,
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendOutcome,
    SendResult,
    TransientChannelError,
)
from channels.fcm_push import FcmPush
from channels.simulators.base import FaultMix
from channels.simulators.fcm import FcmSimulator
from tests.support.raw_peer import RawPeer

PROJECT = "taipower-notifier-test"
ACCESS_TOKEN = "sim-access-token"
DEEP_LINK = {"delivery_id": "42", "bill_no": "B202609-01234567890"}


@pytest.fixture(scope="module")
def _fcm_server() -> Iterator[FcmSimulator]:
    with FcmSimulator(access_token=ACCESS_TOKEN, project=PROJECT) as simulator:
        yield simulator


@pytest.fixture
def fcm(_fcm_server: FcmSimulator) -> FcmSimulator:
    """The FCM simulator, expecting ``ACCESS_TOKEN`` and ``PROJECT``, with nothing received."""
    _fcm_server.reset()
    return _fcm_server


def notice(*tokens: str) -> Message:
    return Message(
        delivery_id=42,
        channel="push",
        to=tokens,
        subject="電費繳費通知",
        body="您的電費 NT$1,830 尚未繳納",
        data=DEEP_LINK,
    )


def push(base_url: str, **options: Any) -> FcmPush:
    settings: dict[str, Any] = {
        "project_id": PROJECT,
        "access_token": ACCESS_TOKEN,
        "base_url": base_url,
        "sdk_retries": False,
        "timeout": 5.0,
    }
    return FcmPush(**(settings | options))


def send(base_url: str, message: Message, **options: Any) -> SendResult:
    """Build a channel, send once, close it: the way a worker task uses it."""

    async def run() -> SendResult:
        channel = push(base_url, **options)
        try:
            return await channel.send(message)
        finally:
            await channel.aclose()

    return asyncio.run(run())


# --- accepted sends -------------------------------------------------------------------------


def test_each_token_gets_the_notice_and_the_deep_link(fcm: FcmSimulator) -> None:
    with warnings.catch_warnings():
        # firebase-admin 7.7 deprecates Message.token; the channel must not use it.
        warnings.simplefilter("error", DeprecationWarning)
        result = send(fcm.base_url, notice("device-a", "device-b"))

    title, body = "電費繳費通知", "您的電費 NT$1,830 尚未繳納"
    assert sorted(r[:4] for r in fcm.received) == [
        ("device-a", title, body, DEEP_LINK),
        ("device-b", title, body, DEEP_LINK),
    ]
    assert result.provider == "fcm"
    assert result.status == "sent"
    assert result.provider_id.startswith(f"projects/{PROJECT}/messages/")
    assert result.detail == {"accepted": 2, "rejected": 0, "transient": 0}
    assert result.rejected == ()


def test_a_dead_token_among_live_ones_is_reported_not_raised(fcm: FcmSimulator) -> None:
    result = send(fcm.base_url, notice("device-a", "device-unregistered-b", "device-invalid-c"))

    assert fcm.tokens() == ["device-a"]
    assert result.rejected == ("device-unregistered-b", "device-invalid-c")
    assert result.detail == {"accepted": 1, "rejected": 2, "transient": 0}


def test_a_token_listed_twice_gets_one_push(fcm: FcmSimulator) -> None:
    send(fcm.base_url, notice("device-a", "device-a"))

    assert fcm.tokens() == ["device-a"]


def test_six_hundred_tokens_all_go_out(fcm: FcmSimulator) -> None:
    tokens = [f"device-{n:03d}" for n in range(600)]

    # More than send_each_async takes in one call and than the client has connections.
    result = send(fcm.base_url, notice(*tokens))

    assert sorted(fcm.tokens()) == tokens
    assert result.detail["accepted"] == 600


def test_a_batch_of_notices_gets_one_outcome_per_notice(
    fcm: FcmSimulator,
) -> None:
    batch = [replace(notice(f"device-{n}-a", f"device-{n}-b"), delivery_id=n) for n in range(300)]
    batch[7] = replace(notice("device-unregistered-7"), delivery_id=7)

    async def run() -> list[SendOutcome]:
        channel = push(fcm.base_url)
        try:
            return await channel.send_many(batch)
        finally:
            await channel.aclose()

    outcomes = asyncio.run(run())

    # 599 pushes, more than one send_each_async takes: sent apart, reassembled per notice.
    assert len(fcm.tokens()) == 598  # all but the dead token
    assert isinstance(outcomes[7], PermanentChannelError)
    assert outcomes[7].rejected == ("device-unregistered-7",)
    assert all(isinstance(o, SendResult) for i, o in enumerate(outcomes) if i != 7)
    assert {o.detail["accepted"] for o in outcomes if isinstance(o, SendResult)} == {2}


# --- what the device's platform is told: expiry, collapse, priority -------------------------


def test_a_dunning_notice_expires_collapses_and_wakes_the_device(fcm: FcmSimulator) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=30)
    message = replace(
        notice("device-a"), expires_at=expires, collapse_key="01234567890-B1", priority="high"
    )

    send(fcm.base_url, message)

    (received,) = fcm.received
    ttl = int(received.android["ttl"].removesuffix("s"))
    assert 30 * 3600 - 5 <= ttl <= 30 * 3600, "seconds left until the expiry, at send time"
    assert received.android["collapse_key"] == "01234567890-B1"
    assert received.android["priority"] == "high"
    assert received.apns_headers == {
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-expiration": str(int(expires.timestamp())),
        "apns-collapse-id": "01234567890-B1",
    }


def test_an_informational_notice_is_normal_priority(fcm: FcmSimulator) -> None:
    send(fcm.base_url, replace(notice("device-a"), collapse_key="k"))

    (received,) = fcm.received
    assert received.android == {"collapse_key": "k", "priority": "normal"}, "no expiry: no ttl"
    assert received.apns_headers == {
        "apns-push-type": "alert",
        "apns-priority": "5",
        "apns-collapse-id": "k",
    }


def test_a_notice_past_its_expiry_goes_now_or_never(fcm: FcmSimulator) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)

    send(fcm.base_url, replace(notice("device-a"), expires_at=past))

    (received,) = fcm.received
    assert received.android["ttl"] == "0s"
    assert received.apns_headers["apns-expiration"] == str(int(past.timestamp()))


def test_a_long_collapse_key_fits_apns(fcm: FcmSimulator) -> None:
    key = "01234567890-" + "B" * 80

    send(fcm.base_url, replace(notice("device-a"), collapse_key=key))

    (received,) = fcm.received
    assert received.android["collapse_key"] == key
    collapse_id = received.apns_headers["apns-collapse-id"]
    assert len(collapse_id.encode()) <= 64
    assert collapse_id != key[:64], "a hash, not a cut that two bills could share"


def test_fifty_notices_sent_at_once_each_get_their_own_result(fcm: FcmSimulator) -> None:
    batch = [
        replace(notice(f"device-{n}"), delivery_id=n, collapse_key=f"acct-{n}") for n in range(50)
    ]
    batch[13] = replace(notice("device-unregistered-13"), delivery_id=13)
    batch[31] = replace(notice("device-quota-31"), delivery_id=31)

    async def run() -> list[SendOutcome]:
        channel = push(fcm.base_url)
        try:
            return await channel.send_many(batch)
        finally:
            await channel.aclose()

    outcomes = asyncio.run(run())

    by_token = {r.token: r for r in fcm.received}
    assert len(by_token) == 48
    ids = set()
    for n, outcome in enumerate(outcomes):
        if n == 13:
            assert isinstance(outcome, PermanentChannelError)
            assert outcome.rejected == ("device-unregistered-13",)
        elif n == 31:
            assert isinstance(outcome, TransientChannelError)
            assert outcome.code == "QUOTA_EXCEEDED"
        else:
            assert isinstance(outcome, SendResult)
            ids.add(outcome.provider_id)
            # The result is this notice's: its device got its own collapse key.
            assert by_token[f"device-{n}"].android["collapse_key"] == f"acct-{n}"
    assert len(ids) == 48, "each notice carries the name FCM gave its own push"


def test_quota_without_retry_after_waits_a_minute(fcm: FcmSimulator) -> None:
    with pytest.raises(TransientChannelError) as raised:
        send(fcm.base_url, notice("device-quota-no-hint"))

    assert raised.value.code == "QUOTA_EXCEEDED"
    assert raised.value.retry_after is not None
    assert raised.value.retry_after >= 60


def test_a_read_timeout_is_not_resent_by_the_sdk(fcm: FcmSimulator) -> None:
    # FCM took the push, then the answer stalled past our timeout. The channel's
    # defaults are what production uses: no sdk_retries option passed.
    channel_options = {"project_id": PROJECT, "access_token": ACCESS_TOKEN}
    started = time.monotonic()

    async def run() -> SendResult:
        channel = FcmPush(base_url=fcm.base_url, timeout=0.5, **channel_options)
        try:
            return await channel.send(notice("device-stall"))
        finally:
            await channel.aclose()

    with pytest.raises(AmbiguousChannelError) as raised:
        asyncio.run(run())

    assert raised.value.code == "no_answer"
    assert fcm.requests == 1, "one POST: the SDK did not send the push again"
    assert fcm.tokens() == ["device-stall"]
    assert time.monotonic() - started < FcmSimulator.stall_seconds + 1


WIRE_CASES = [
    # id, peer, error, pushes FCM holds afterwards
    ("connection refused", "refused", TransientChannelError, 0),
    ("disconnect after the request", "closes", AmbiguousChannelError, 0),
    ("reset after the request", "resets", AmbiguousChannelError, 0),
    ("read timeout after accept", "stalls", AmbiguousChannelError, 1),
]


@pytest.mark.parametrize(
    ("peer", "error", "held"), [row[1:] for row in WIRE_CASES], ids=[row[0] for row in WIRE_CASES]
)
def test_a_failure_after_the_push_left_is_ambiguous_before_it_transient(
    fcm: FcmSimulator, peer: str, error: type[ChannelError], held: int
) -> None:
    raw: RawPeer | None = None
    if peer == "stalls":
        fcm.faults = FaultMix(stalled=1.0)
        base_url = fcm.base_url
    elif peer == "refused":
        with socket.socket() as probe:  # a port nobody listens on once closed
            probe.bind(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    else:
        raw = RawPeer(peer)
        base_url = raw.base_url

    async def run() -> SendResult:
        channel = FcmPush(
            base_url=base_url, timeout=0.5, project_id=PROJECT, access_token=ACCESS_TOKEN
        )
        try:
            return await channel.send(notice("device-1"))
        finally:
            await channel.aclose()

    try:
        with pytest.raises(ChannelError) as raised:
            asyncio.run(run())
    finally:
        fcm.faults = FaultMix()
        if raw is not None:
            raw.close()

    assert type(raised.value) is error, f"{raised.value!r} from {raised.value.__cause__!r}"
    if raw is not None:
        assert raw.requests == 1, "one POST: nothing sent again"
    assert len(fcm.tokens()) == held


# --- failures, one row per error class ------------------------------------------------------

FAILURES = [
    # id, tokens, error, code, rejected
    (
        "all-unregistered",
        ("device-unregistered-1", "device-unregistered-2"),
        PermanentChannelError,
        "UNREGISTERED",
        ("device-unregistered-1", "device-unregistered-2"),
    ),
    (
        "invalid-token",
        ("device-invalid",),
        PermanentChannelError,
        "INVALID_ARGUMENT",
        ("device-invalid",),
    ),
    ("quota", ("device-quota",), TransientChannelError, "QUOTA_EXCEEDED", None),
    ("unavailable", ("device-unavailable",), TransientChannelError, "UNAVAILABLE", None),
    # Our project or APNs key, not the tokens: none is rejected (none forgotten).
    (
        "sender-mismatch",
        ("device-sender-mismatch",),
        ProviderChannelError,
        "SENDER_ID_MISMATCH",
        None,
    ),
    (
        "mismatch-and-dead",
        ("device-sender-mismatch", "device-unregistered"),
        ProviderChannelError,
        "SENDER_ID_MISMATCH",
        None,
    ),
    # Nothing accepted and one transient: retry the lot rather than give up on push.
    (
        "dead-and-busy",
        ("device-unregistered", "device-unavailable"),
        TransientChannelError,
        "UNAVAILABLE",
        None,
    ),
]


@pytest.mark.parametrize(
    ("tokens", "error", "code", "rejected"),
    [row[1:] for row in FAILURES],
    ids=[row[0] for row in FAILURES],
)
def test_failures_map_to_our_errors(
    fcm: FcmSimulator,
    tokens: tuple[str, ...],
    error: type[Exception],
    code: str,
    rejected: tuple[str, ...] | None,
) -> None:
    with pytest.raises(error) as raised:
        send(fcm.base_url, notice(*tokens))

    assert raised.value.code == code  # type: ignore[attr-defined]
    if rejected is not None:
        assert raised.value.rejected == rejected  # type: ignore[attr-defined]
    else:
        assert getattr(raised.value, "rejected", ()) == (), "no token blamed"
    assert isinstance(raised.value.__cause__, firebase_admin.exceptions.FirebaseError)
    assert fcm.received == []
    assert fcm.requests == len(tokens), "sdk_retries=False must send each message once"


def test_quota_passes_on_retry_after(fcm: FcmSimulator) -> None:
    with pytest.raises(TransientChannelError) as raised:
        send(fcm.base_url, notice("device-quota"))

    assert raised.value.retry_after == float(FcmSimulator.retry_after_seconds)


def test_wrong_access_token_is_the_providers_fault(fcm: FcmSimulator) -> None:
    with pytest.raises(ProviderChannelError) as raised:
        send(fcm.base_url, notice("device-a", "device-b"), access_token="expired-token")

    assert raised.value.code == "UNAUTHENTICATED"
    assert not isinstance(raised.value, PermanentChannelError), "no token is to blame"
    assert isinstance(raised.value.__cause__, firebase_admin.exceptions.UnauthenticatedError)


def test_an_apns_auth_error_is_the_providers_fault(fcm: FcmSimulator) -> None:
    # A 401 answer: google-auth refreshes the credential and asks again, as for any 401.
    with pytest.raises(ProviderChannelError) as raised:
        send(fcm.base_url, notice("device-third-party-auth"))

    assert raised.value.code == "THIRD_PARTY_AUTH_ERROR"
    assert isinstance(raised.value.__cause__, firebase_admin.messaging.ThirdPartyAuthError)
    assert fcm.received == []


def test_wrong_project_is_the_providers_fault(fcm: FcmSimulator) -> None:
    with pytest.raises(ProviderChannelError) as raised:
        send(fcm.base_url, notice("device-a"), project_id="someone-elses-project")

    assert raised.value.code == "PERMISSION_DENIED"


def test_stopped_simulator_is_transient() -> None:
    simulator = FcmSimulator(access_token=ACCESS_TOKEN)
    base_url = simulator.start()
    simulator.stop()

    with pytest.raises(TransientChannelError) as raised:
        send(base_url, notice("device-a"))

    assert raised.value.code == "UNAVAILABLE"


def test_sdk_retries_when_left_on() -> None:
    # Seed 1 draws 0.13 then 0.85: the first request gets a 503, the second goes through.
    faults = FaultMix(server_error=0.5, seed=1)
    with FcmSimulator(access_token=ACCESS_TOKEN, faults=faults) as simulator:
        result = send(simulator.base_url, notice("device-a"), sdk_retries=True)

    assert result.detail["accepted"] == 1
    assert simulator.requests == 2


# --- instances, configuration and the registry ----------------------------------------------


def test_two_instances_keep_their_own_endpoints(fcm: FcmSimulator) -> None:
    with FcmSimulator(access_token=ACCESS_TOKEN, project=PROJECT) as other:

        async def run() -> None:
            first, second = push(fcm.base_url), push(other.base_url)
            try:
                await asyncio.gather(
                    first.send(notice("first-1", "first-2")),
                    second.send(notice("second-1")),
                    first.send(notice("first-3")),
                )
            finally:
                await first.aclose()
                await second.aclose()

        asyncio.run(run())

        assert sorted(fcm.tokens()) == ["first-1", "first-2", "first-3"]
        assert other.tokens() == ["second-1"]
    assert messaging._MessagingService.FCM_URL.startswith("https://fcm.googleapis.com/")


def test_aclose_deletes_the_firebase_app(fcm: FcmSimulator) -> None:
    channel = push(fcm.base_url, app_name="fcm-close-test")
    assert firebase_admin.get_app("fcm-close-test") is not None

    asyncio.run(channel.aclose())
    asyncio.run(channel.aclose())  # twice is harmless

    with pytest.raises(ValueError):
        firebase_admin.get_app("fcm-close-test")
    with pytest.raises(RuntimeError):
        asyncio.run(channel.send(notice("device-a")))


def test_the_registry_builds_it(fcm: FcmSimulator) -> None:
    channel = channels.create(
        "push", "fcm", project_id=PROJECT, access_token=ACCESS_TOKEN, base_url=fcm.base_url
    )
    try:
        assert isinstance(channel, FcmPush)
        assert "fcm" in channels.providers("push")
    finally:
        asyncio.run(channel.aclose())


def test_a_service_account_file_is_accepted(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "test",
        "private_key": pem,
        "client_email": f"notifier@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))

    channel = FcmPush(project_id=PROJECT, credentials_file=str(path))

    asyncio.run(channel.aclose())


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"project_id": "", "access_token": "t"}, "project_id"),
        ({"project_id": PROJECT}, "credentials_file or access_token"),
        (
            {"project_id": PROJECT, "access_token": "t", "credentials_file": "/x.json"},
            "credentials_file or access_token",
        ),
        ({"project_id": PROJECT, "credentials_file": "/nonexistent/sa.json"}, "credentials_file"),
        ({"project_id": PROJECT, "access_token": "t", "base_url": "fcm.local"}, "base_url"),
        ({"project_id": PROJECT, "access_token": "t", "timeout": 0}, "timeout"),
    ],
    ids=["no-project", "no-credential", "two-credentials", "missing-file", "bad-url", "timeout"],
)
def test_constructor_refuses_bad_settings(options: dict[str, Any], named: str) -> None:
    apps_before = set(firebase_admin._apps)

    with pytest.raises(ValueError, match=named):
        FcmPush(**options)

    assert set(firebase_admin._apps) == apps_before, "a refused channel leaves no app behind"
