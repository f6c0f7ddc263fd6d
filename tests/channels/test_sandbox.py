"""The sandbox providers behind the channel contract, and the registry that finds them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import channels
from channels import (
    Channel,
    Message,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
)
from channels.sandbox import SandboxSms


def send(channel: Channel, message: Message) -> SendResult:
    return asyncio.run(channel.send(message))


def message(channel: str, *to: str, attempt: int = 1, **fields: Any) -> Message:
    return Message(
        delivery_id=42, channel=channel, to=to, body="您的電費尚未繳納", attempt=attempt, **fields
    )


def outbox(tmp_path: Path, channel: str) -> list[dict[str, Any]]:
    path = tmp_path / f"{channel}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- accepted sends -------------------------------------------------------------------------


def test_sms_send_appends_one_json_line(tmp_path: Path) -> None:
    sms = channels.create("sms", "sandbox", outbox_dir=tmp_path)

    result = send(sms, message("sms", "+886912345678"))

    [line] = outbox(tmp_path, "sms")
    assert line["to"] == ["+886912345678"]
    assert line["body"] == "您的電費尚未繳納"
    assert line["delivery_id"] == 42
    assert line["provider_id"] == result.provider_id
    assert result.provider == "sandbox"
    assert result.provider_id.startswith("sbx-sms-")
    assert result.rejected == ()


def test_each_send_appends_another_line(tmp_path: Path) -> None:
    sms = channels.create("sms", "sandbox", outbox_dir=tmp_path)

    first = send(sms, message("sms", "+886912345678"))
    second = send(sms, message("sms", "+886987654321"))

    assert [line["to"] for line in outbox(tmp_path, "sms")] == [
        ["+886912345678"],
        ["+886987654321"],
    ]
    assert first.provider_id != second.provider_id


def test_email_records_its_subject(tmp_path: Path) -> None:
    email = channels.create("email", "sandbox", outbox_dir=tmp_path)

    send(email, message("email", "a@example.com", subject="電費繳費通知"))

    [line] = outbox(tmp_path, "email")
    assert line["subject"] == "電費繳費通知"
    assert outbox(tmp_path, "sms") == []


@pytest.mark.parametrize(
    ("channel", "recipient", "status"),
    [
        ("sms", "+886912345678", "delivered"),
        ("voice", "+886223456789", "delivered"),
        ("push", "tok-abc", "delivered"),
        ("email", "a@example.com", "sent"),  # an SMTP accept proves no more
        ("postcard", "苗栗縣頭份市中正路1號", "sent"),  # nobody reports a card delivered
    ],
)
def test_final_status_per_channel(
    tmp_path: Path, channel: str, recipient: str, status: str
) -> None:
    provider = channels.create(channel, "sandbox", outbox_dir=tmp_path)

    result = send(provider, message(channel, recipient))

    assert result.status == status
    assert len(outbox(tmp_path, channel)) == 1


# --- magic recipients -----------------------------------------------------------------------

# (channel, recipient, attempt, expected): "ok", "transient" or "permanent"
MAGIC = [
    pytest.param("sms", "+886900000001", 1, "permanent", id="invalid-number"),
    pytest.param("sms", "+886900000001", 5, "permanent", id="invalid-number-stays-invalid"),
    pytest.param("sms", "+886900000012", 1, "transient", id="busy-twice-attempt-1"),
    pytest.param("sms", "+886900000012", 2, "transient", id="busy-twice-attempt-2"),
    pytest.param("sms", "+886900000012", 3, "ok", id="busy-twice-attempt-3"),
    pytest.param("voice", "+886900000011", 1, "transient", id="voice-busy-once"),
    pytest.param("voice", "+886900000011", 2, "ok", id="voice-busy-once-then-ok"),
    pytest.param("sms", "+886900000002", 1, "ok", id="other-magic-number-is-ok"),
    pytest.param("email", "x-fail-permanent@example.com", 1, "permanent", id="email-permanent"),
    pytest.param("email", "x-fail-transient-2@example.com", 2, "transient", id="email-transient"),
    pytest.param("email", "x-fail-transient-2@example.com", 3, "ok", id="email-then-ok"),
    pytest.param("push", "tok-fail-transient-1", 1, "transient", id="push-transient"),
    pytest.param("push", "tok-fail-transient-1", 2, "ok", id="push-then-ok"),
    pytest.param("push", "tok-fail-permanent", 1, "permanent", id="push-permanent"),
]


@pytest.mark.parametrize(("channel", "recipient", "attempt", "expected"), MAGIC)
def test_magic_recipients(
    tmp_path: Path, channel: str, recipient: str, attempt: int, expected: str
) -> None:
    provider = channels.create(channel, "sandbox", outbox_dir=tmp_path)
    sent = message(channel, recipient, attempt=attempt)

    if expected == "ok":
        assert send(provider, sent).rejected == ()
        assert [line["to"] for line in outbox(tmp_path, channel)] == [[recipient]]
        return
    error = PermanentChannelError if expected == "permanent" else TransientChannelError
    with pytest.raises(error):
        send(provider, sent)
    assert outbox(tmp_path, channel) == []


def test_an_invalid_number_carries_twilios_code(tmp_path: Path) -> None:
    sms = channels.create("sms", "sandbox", outbox_dir=tmp_path)

    with pytest.raises(PermanentChannelError) as caught:
        send(sms, message("sms", "+886900000001"))

    assert caught.value.code == "21211"
    assert caught.value.rejected == ("+886900000001",)
    assert str(caught.value) == "21211: sandbox: invalid number"


def test_a_transient_failure_is_a_503(tmp_path: Path) -> None:
    sms = channels.create("sms", "sandbox", outbox_dir=tmp_path)

    with pytest.raises(TransientChannelError) as caught:
        send(sms, message("sms", "+886900000012"))

    assert caught.value.code == "503"


# --- multicast ------------------------------------------------------------------------------


def test_push_multicast_reports_the_rejected_token(tmp_path: Path) -> None:
    push = channels.create("push", "sandbox", outbox_dir=tmp_path)

    result = send(push, message("push", "tok-good", "tok-fail-permanent"))

    assert result.rejected == ("tok-fail-permanent",)
    assert result.detail == {"recipients": 1}
    [line] = outbox(tmp_path, "push")
    assert line["to"] == ["tok-good"]


def test_push_multicast_with_every_token_bad_fails_for_good(tmp_path: Path) -> None:
    push = channels.create("push", "sandbox", outbox_dir=tmp_path)

    with pytest.raises(PermanentChannelError) as caught:
        send(push, message("push", "a-fail-permanent", "b-fail-permanent"))

    assert caught.value.rejected == ("a-fail-permanent",)
    assert outbox(tmp_path, "push") == []


@pytest.mark.parametrize("channel", channels.CHANNEL_NAMES)
def test_no_recipient_fails_for_good(tmp_path: Path, channel: str) -> None:
    provider = channels.create(channel, "sandbox", outbox_dir=tmp_path)

    with pytest.raises(PermanentChannelError) as caught:
        send(provider, message(channel))

    assert caught.value.code == "no_recipient"
    assert outbox(tmp_path, channel) == []


# --- registry -------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", channels.CHANNEL_NAMES)
def test_every_channel_has_a_sandbox(channel: str) -> None:
    assert "sandbox" in channels.providers(channel)


def test_providers_of_an_unknown_channel_is_empty() -> None:
    assert channels.providers("fax") == []


def test_a_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="'sandbox' is already registered for 'sms'"):
        channels.register("sms", "sandbox")(SandboxSms)
    assert channels.providers("sms").count("sandbox") == 1


def test_an_unknown_channel_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown channel 'fax'; known: push, sms"):
        channels.register("fax", "sandbox")


def test_create_of_an_unknown_provider_lists_the_registered_ones(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="no provider 'nexmo' for channel 'sms'") as caught:
        channels.create("sms", "nexmo", outbox_dir=tmp_path)
    assert "registered: " in str(caught.value)
    assert "sandbox" in str(caught.value).split("registered: ")[1]


def test_create_for_an_unknown_channel_says_none_registered() -> None:
    with pytest.raises(LookupError, match="registered: none"):
        channels.create("fax", "sandbox")
