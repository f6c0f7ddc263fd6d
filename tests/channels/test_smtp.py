"""The SMTP email channel: the real aiosmtplib client against the aiosmtpd catcher."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, TypeVar

import pytest

import channels
from channels import (
    ChannelError,
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendOutcome,
    SendResult,
    TransientChannelError,
)
from channels.simulators.smtp import SmtpCatcher
from channels.smtp_email import SmtpEmail

T = TypeVar("T")
FROM = "notices@utility.example"


def run(awaitable: Awaitable[T]) -> T:
    async def bounded() -> T:
        # Nothing here may hang: a wrong password once did (FIELD-NOTES).
        return await asyncio.wait_for(awaitable, timeout=10)

    return asyncio.run(bounded())


def message(*to: str, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "delivery_id": 42,
        "channel": "email",
        "to": to or ("wang@example.com",),
        "body": "您的電費 1,830 元尚未繳納，請於 2026-11-20 前繳費。",
        "subject": "電費催繳通知",
        "name": "王小明",
    }
    return Message(**(values | fields))


def email_channel(catcher: SmtpCatcher, **options: Any) -> SmtpEmail:
    settings: dict[str, Any] = {
        "host": catcher.host,
        "port": catcher.port,
        "starttls": False,
        "from_address": FROM,
        "from_name": "台灣電力公司",
        "timeout": 5.0,
    }
    return SmtpEmail(**(settings | options))


def send_all(channel: SmtpEmail, *messages: Message) -> list[SendResult]:
    async def go() -> list[SendResult]:
        try:
            return [await channel.send(m) for m in messages]
        finally:
            await channel.aclose()

    return run(go())


@pytest.fixture
def catcher() -> Iterator[SmtpCatcher]:
    with SmtpCatcher() as running:
        yield running


# --- an accepted send -------------------------------------------------------------------------


def test_a_notice_arrives_as_multipart_with_its_chinese_headers_intact(
    catcher: SmtpCatcher,
) -> None:
    channel = email_channel(catcher, reply_to="service@utility.example")

    [result] = send_all(
        channel, message(html="<p>您的電費 <b>1,830</b> 元尚未繳納</p>", delivery_id=9001)
    )

    [mail] = catcher.messages
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().startswith("您的電費 1,830 元尚未繳納")
    assert "<b>1,830</b>" in html.get_content()
    assert mail["Subject"] == "電費催繳通知"
    [to] = mail["To"].addresses
    assert (to.display_name, to.addr_spec) == ("王小明", "wang@example.com")
    [sender] = mail["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("台灣電力公司", FROM)
    raw = dict(mail.raw_items())
    assert raw["Subject"].startswith("=?utf-8?")  # RFC 2047 on the wire, decoded above
    assert raw["To"].startswith("=?utf-8?")
    assert mail["Reply-To"] == "service@utility.example"
    assert mail["X-Notifier-Delivery"] == "9001"
    assert mail["Date"] is not None
    assert mail["Message-ID"] == f"<{result.provider_id}>"
    assert result.provider_id.endswith("@utility.example")
    assert (result.provider, result.status, result.rejected) == ("smtp", "sent", ())
    assert result.detail["smtp_response"] == "250 2.0.0 Ok: queued as 1"
    [envelope] = catcher.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == (FROM, ("wang@example.com",))


def test_a_plain_text_notice_is_a_single_part(catcher: SmtpCatcher) -> None:
    send_all(email_channel(catcher), message(name=None))

    [mail] = catcher.messages
    assert mail.get_content_type() == "text/plain"
    assert mail["To"] == "wang@example.com"
    assert "Reply-To" not in mail


def test_message_id_domain_overrides_the_sender_domain(catcher: SmtpCatcher) -> None:
    [result] = send_all(email_channel(catcher, message_id_domain="mail.utility.example"), message())

    assert result.provider_id.endswith("@mail.utility.example")


def test_one_refused_recipient_of_two_is_reported_not_raised(catcher: SmtpCatcher) -> None:
    [result] = send_all(email_channel(catcher), message("wang@example.com", "smtp-550@example.com"))

    assert result.rejected == ("smtp-550@example.com",)
    assert result.detail["refused"]["smtp-550@example.com"].startswith("550 5.1.1")
    assert catcher.envelopes[0].rcpt_tos == ("wang@example.com",)


# --- each error class -------------------------------------------------------------------------

CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], type[ChannelError], str]] = [
    # id, recipient, catcher options, channel options, error, code
    ("451-at-rcpt", "smtp-451@example.com", {}, {}, TransientChannelError, "451"),
    ("550-at-rcpt", "smtp-550@example.com", {}, {}, PermanentChannelError, "550"),
    ("552-at-data", "smtp-552@example.com", {}, {}, PermanentChannelError, "552"),
    ("random-451", "a@example.com", {"transient_rate": 1.0}, {}, TransientChannelError, "451"),
    ("random-550", "a@example.com", {"permanent_rate": 1.0}, {}, PermanentChannelError, "550"),
    (
        "wrong-password",
        "a@example.com",
        {"require_auth": ("notifier", "s3cret")},
        {"username": "notifier", "password": "wrong"},
        ProviderChannelError,
        "535",
    ),
    (
        "no-login-where-required",
        "a@example.com",
        {"require_auth": ("notifier", "s3cret")},
        {},
        ProviderChannelError,
        "530",
    ),
    (
        "starttls-required-but-not-offered",
        "a@example.com",
        {},
        {"starttls": True},
        PermanentChannelError,
        "unsupported",
    ),
]


@pytest.mark.parametrize(
    ("recipient", "catcher_options", "channel_options", "error", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_refusal_maps_to_its_error_class(
    recipient: str,
    catcher_options: dict[str, Any],
    channel_options: dict[str, Any],
    error: type[ChannelError],
    code: str,
) -> None:
    with SmtpCatcher(seed=7, **catcher_options) as catcher:
        channel = email_channel(catcher, **channel_options)
        started = time.monotonic()

        with pytest.raises(ChannelError) as caught:
            send_all(channel, message(recipient))

    assert type(caught.value) is error
    assert caught.value.code == code
    assert isinstance(caught.value.__cause__, Exception)  # mapped once, from the vendor's error
    assert time.monotonic() - started < 5  # a refusal is answered, never waited out
    assert catcher.messages == []
    if isinstance(caught.value, PermanentChannelError) and code in ("550", "552"):
        assert caught.value.rejected == (recipient,)


def test_a_wrong_password_is_the_providers_fault_not_the_address() -> None:
    with SmtpCatcher(require_auth=("notifier", "s3cret")) as catcher:
        channel = email_channel(catcher, username="notifier", password="wrong")

        with pytest.raises(ProviderChannelError) as caught:
            send_all(channel, message())

    assert "username and password" in caught.value.reason
    assert not isinstance(caught.value, PermanentChannelError)  # the address is not at fault


def test_the_right_password_is_accepted() -> None:
    with SmtpCatcher(require_auth=("notifier", "s3cret")) as catcher:
        send_all(email_channel(catcher, username="notifier", password="s3cret"), message())

    assert catcher.envelopes[0].login == "notifier"


def test_a_server_that_is_down_is_transient() -> None:
    catcher = SmtpCatcher()
    catcher.start()
    catcher.stop()  # nothing listens on that port now

    with pytest.raises(TransientChannelError) as caught:
        send_all(email_channel(catcher), message())

    assert caught.value.code == "connect"


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"host": ""}, "host"),
        ({"host": "   "}, "host"),
        ({"from_address": ""}, "from_address"),
        ({"from_address": "not an address"}, "from_address"),
    ],
)
def test_the_constructor_refuses_a_missing_setting(options: dict[str, Any], setting: str) -> None:
    settings: dict[str, Any] = {"host": "smtp.example", "from_address": FROM} | options

    with pytest.raises(ValueError, match=setting):
        SmtpEmail(**settings)


def test_a_message_without_recipient_is_permanent(catcher: SmtpCatcher) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        send_all(email_channel(catcher), message(to=()))

    assert caught.value.code == "no_recipient"


# --- one connection, kept ---------------------------------------------------------------------


def test_twenty_sends_share_one_connection(catcher: SmtpCatcher) -> None:
    results = send_all(email_channel(catcher), *(message(delivery_id=i) for i in range(1, 21)))

    assert catcher.connections == 1
    assert [m["X-Notifier-Delivery"] for m in catcher.messages] == [str(i) for i in range(1, 21)]
    assert len({r.provider_id for r in results}) == 20


def test_a_refusal_leaves_the_connection_usable(catcher: SmtpCatcher) -> None:
    channel = email_channel(catcher)

    async def go() -> SendResult:
        with pytest.raises(PermanentChannelError):
            await channel.send(message("smtp-550@example.com"))
        with pytest.raises(PermanentChannelError):
            await channel.send(message("smtp-552@example.com"))
        try:
            return await channel.send(message())
        finally:
            await channel.aclose()

    run(go())

    assert catcher.connections == 1
    assert len(catcher.messages) == 1


@pytest.mark.parametrize("connections", [1, 3])
def test_concurrent_sends_share_at_most_the_configured_connections(
    catcher: SmtpCatcher, connections: int
) -> None:
    channel = email_channel(catcher, connections=connections)

    async def go() -> list[SendResult]:
        try:
            return await asyncio.gather(*(channel.send(message(delivery_id=i)) for i in range(10)))
        finally:
            await channel.aclose()

    results = run(go())

    assert len(results) == 10
    assert catcher.connections == connections
    assert len(catcher.messages) == 10


def test_a_batch_goes_out_over_the_pooled_connections_with_one_outcome_each(
    catcher: SmtpCatcher,
) -> None:
    channel = email_channel(catcher, connections=4)
    batch = [message(delivery_id=i) for i in range(1, 13)]
    batch[5] = message("smtp-550@example.com", delivery_id=6)

    async def go() -> list[SendOutcome]:
        try:
            return await channel.send_many(batch)
        finally:
            await channel.aclose()

    outcomes = run(go())

    assert [type(o).__name__ for o in outcomes] == ["SendResult"] * 5 + [
        "PermanentChannelError"
    ] + ["SendResult"] * 6
    assert catcher.connections <= 4
    assert sorted(int(m["X-Notifier-Delivery"]) for m in catcher.messages) == [
        i for i in range(1, 13) if i != 6
    ]


@pytest.mark.parametrize("idle", [0.0, 0.2], ids=["drop-noticed-on-use", "drop-noticed-while-idle"])
def test_a_connection_the_server_dropped_is_reopened_once(
    catcher: SmtpCatcher, idle: float
) -> None:
    channel = email_channel(catcher)

    async def go() -> SendResult:
        try:
            await channel.send(message(delivery_id=1))
            catcher.stop()  # drops the open connection
            catcher.start()  # same port
            await asyncio.sleep(idle)
            return await channel.send(message(delivery_id=2))
        finally:
            await channel.aclose()

    result = run(go())

    assert result.status == "sent"
    assert catcher.connections == 2
    assert [m["X-Notifier-Delivery"] for m in catcher.messages] == ["1", "2"]


def test_a_cancelled_send_does_not_leave_the_connection_out_of_step() -> None:
    with SmtpCatcher(latency_ms=400) as catcher:
        channel = email_channel(catcher)

        async def go() -> SendResult:
            try:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(channel.send(message(delivery_id=1)), 0.1)
                catcher.latency_ms = 0
                return await channel.send(message(delivery_id=2))
            finally:
                await channel.aclose()

        run(go())
        time.sleep(0.4)  # let the abandoned DATA finish on the server

    assert catcher.connections == 2
    assert catcher.messages[-1]["X-Notifier-Delivery"] == "2"


def test_aclose_quits_and_a_later_send_reconnects(catcher: SmtpCatcher) -> None:
    channel = email_channel(catcher)

    async def go() -> None:
        await channel.send(message())
        await channel.aclose()
        await channel.aclose()  # twice is harmless
        await channel.send(message())
        await channel.aclose()

    run(go())

    assert catcher.connections == 2


# --- the registry, TLS, and the catcher's folder ----------------------------------------------


def test_the_registry_builds_the_smtp_provider(catcher: SmtpCatcher) -> None:
    channel = channels.create(
        "email", "smtp", host=catcher.host, port=catcher.port, starttls=False, from_address=FROM
    )

    assert isinstance(channel, SmtpEmail)
    assert "smtp" in channels.providers("email")


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for 127.0.0.1 and a client context that trusts it."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


def test_starttls_then_login_over_one_connection(tmp_path: Path) -> None:
    server_tls, client_tls = _self_signed(tmp_path)
    with SmtpCatcher(starttls=server_tls, require_auth=("notifier", "s3cret")) as catcher:
        channel = email_channel(
            catcher,
            starttls=True,
            tls_context=client_tls,
            username="notifier",
            password="s3cret",
        )

        send_all(channel, message(delivery_id=1), message(delivery_id=2))

    assert catcher.connections == 1
    assert [(e.tls, e.login) for e in catcher.envelopes] == [(True, "notifier")] * 2


def test_the_catcher_writes_each_message_as_an_eml_file(tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    with SmtpCatcher(maildir=maildir) as catcher:
        send_all(email_channel(catcher), message(delivery_id=1), message(delivery_id=2))

    files = sorted(maildir.glob("*.eml"))
    assert len(files) == 2
    parsed = [BytesParser(policy=default_policy).parsebytes(f.read_bytes()) for f in files]
    assert all(isinstance(p, EmailMessage) for p in parsed)
    assert {p["X-Notifier-Delivery"] for p in parsed} == {"1", "2"}
    assert {p["Subject"] for p in parsed} == {"電費催繳通知"}
    assert not list(maildir.glob(".*.tmp"))


def test_the_catcher_keeps_only_the_last_messages_when_asked() -> None:
    with SmtpCatcher(keep_last=3) as catcher:
        send_all(email_channel(catcher), *(message(delivery_id=i) for i in range(5)))

    assert [m["X-Notifier-Delivery"] for m in catcher.messages] == ["2", "3", "4"]
    assert len(catcher.envelopes) == 3


def test_a_channel_moved_to_a_new_event_loop_reconnects(catcher: SmtpCatcher) -> None:
    channel = email_channel(catcher)

    # This loop closes with the connection open; only GC can release that socket now.
    run(channel.send(message(delivery_id=1)))
    send_all(channel, message(delivery_id=2))

    assert catcher.connections == 2
    assert len(catcher.messages) == 2


# --- bounces come back to a per-delivery address; robots and strict servers are told who we are


def test_the_envelope_sender_is_the_messages_bounce_address(catcher: SmtpCatcher) -> None:
    verp = "bounces+AbC-d_e@bounces.utility.example"
    send_all(email_channel(catcher), message(return_path=verp), message(delivery_id=43))

    first, second = catcher.envelopes
    assert first.mail_from == verp  # the receiving MTA writes Return-Path from this
    assert second.mail_from == FROM  # no bounce address: the From address, as before
    assert all("Return-Path" not in mail for mail in catcher.messages)  # never ours to write
    [sender] = catcher.messages[0]["From"].addresses
    assert sender.addr_spec == FROM  # what the customer sees does not change


def test_every_notice_says_it_was_sent_by_a_machine(catcher: SmtpCatcher) -> None:
    send_all(email_channel(catcher), message(), message(html="<p>電費</p>"))

    assert [mail["Auto-Submitted"] for mail in catcher.messages] == ["auto-generated"] * 2


@pytest.mark.parametrize(
    "fields",
    [
        {"html": "<p>您的電費 <b>1,830</b> 元\n尚未繳納</p>", "body": "第一行\n第二行\n"},
        {"body": "Your bill of NT$1,830\nis unpaid.\n", "subject": "Bill"},
    ],
    ids=["chinese-multipart-base64", "ascii-quoted-printable"],
)
def test_every_line_of_every_part_ends_in_crlf(tmp_path: Path, fields: dict[str, Any]) -> None:
    maildir = tmp_path / "mail"
    with SmtpCatcher(maildir=maildir) as catcher:
        send_all(email_channel(catcher), message(**fields))

    [file] = maildir.glob("*.eml")
    raw = file.read_bytes()
    assert b"\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")  # on the wire
    mail = BytesParser(policy=default_policy).parsebytes(raw)
    parts = [part for part in mail.walk() if part.get_content_maintype() == "text"]
    assert parts
    for part in parts:
        decoded = part.get_payload(decode=True)
        assert isinstance(decoded, bytes)
        # Inside base64 and quoted-printable too: text is encoded in its CRLF canonical form.
        assert decoded.count(b"\n") >= 1 and decoded.count(b"\n") == decoded.count(b"\r\n"), (
            part.get_content_type(),
            part["Content-Transfer-Encoding"],
        )


def test_the_ehlo_name_is_the_configured_one(catcher: SmtpCatcher) -> None:
    send_all(email_channel(catcher, ehlo_name="mail.utility.example"), message())
    send_all(email_channel(catcher), message())

    named, default = catcher.envelopes
    assert named.helo == "mail.utility.example"
    assert default.helo == socket.getfqdn()  # aiosmtplib's own default, unchanged


def test_an_ehlo_name_with_a_space_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="ehlo_name"):
        SmtpEmail(host="127.0.0.1", from_address=FROM, ehlo_name="mail utility")
