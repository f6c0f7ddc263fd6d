"""A call reaches a person, or it does not count: answering-machine detection end to end.

The real twilio SDK places each call on the simulator, which answers it as a
person, a machine or a person who hangs up at once (by the number dialled),
and posts its answering-machine result and status callbacks, signed, to the
API. Only a person who stayed ``voice.min_served_seconds`` makes the call
served; a machine is left the short voicemail instead, and the notice goes on
to a postcard like a failed call.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from notifier.deliveries.models import Delivery
from notifier.escalation import proof
from notifier.providers.simulated import Simulators
from tests.support import events
from tests.support.stack import Stack, build_stack, wait_until

MACHINE = "+886912340488"  # simulator: AnsweredBy machine_end_beep
SHORT_CALL = "+886912340490"  # simulator: a person, CallDuration 4
PERSON = "+886912345678"  # simulator: a person, CallDuration 45


@pytest.fixture(scope="module")
def stack(simulators: Simulators, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        **simulators.env,
        "NOTIFIER_PROVIDERS": "{}",  # the real twilio adapter
        "NOTIFIER_SERVICE_DIAL_NUMBER": "+886223456789",
        "NOTIFIER_SERVICE_PHONE": "1911",
    }
    built = build_stack("sqlite-filesystem-voice-amd", tmp_path_factory.mktemp("amd"), env)
    yield built
    built.close()


def _call_to(simulators: Simulators, call: Delivery) -> dict[str, object]:
    [placed] = [c for c in simulators.twilio.calls if c["Sid"] == call.provider_id]
    return placed


def _served(stack: Stack, call: Delivery) -> bool:
    with stack.db() as session:
        return any(p.channel == "voice" for p in proof.proofs(session, call.notification_id))


def test_a_person_who_listens_is_served_by_the_call(stack: Stack, simulators: Simulators) -> None:
    acct = events.account(phone=PERSON, email=None, push_tokens=None)
    stack.post(events.unpaid(acct, level=2))

    _, call = stack.reach(acct["account_no"], [("sms", "delivered"), ("voice", "delivered")])

    placed = _call_to(simulators, call)
    assert placed["MachineDetection"] == "DetectMessageEnd" and placed["AsyncAmd"] == "true"
    assert str(placed["AsyncAmdStatusCallback"]).startswith(
        f"{stack.settings.public_url}/v1/callbacks/twilio/machine/"
    )
    timeline = stack.timeline(call.id)
    assert any(d.get("answered_by") == "human" for _, d in timeline)
    assert timeline[-1][0] == "delivered" and timeline[-1][1]["call_duration"] == "45"
    assert not [u for u in simulators.twilio.call_updates if u["Sid"] == call.provider_id]
    assert _served(stack, call)


def test_a_machine_gets_the_short_voicemail_and_the_notice_goes_on_to_a_postcard(
    stack: Stack, simulators: Simulators
) -> None:
    acct = events.account(phone=MACHINE, email=None, push_tokens=None)
    stack.post(events.unpaid(acct, level=2))

    rows = stack.reach(
        acct["account_no"],
        [("sms", "delivered"), ("voice", "undelivered"), ("postcard", "sent")],
    )
    call, card = rows[1], rows[2]
    assert card.fallback_of == call.id
    assert call.last_error == "provider: voicemail"
    timeline = stack.timeline(call.id)
    assert any(d.get("answered_by") == "machine_end_beep" for _, d in timeline)
    assert "voicemail" in [status for status, _ in timeline]
    assert not _served(stack, call)
    # The worker replaced the live call's TwiML: the policy's text, no name, no amount.
    update = wait_until(
        lambda: next(
            (u for u in simulators.twilio.call_updates if u["Sid"] == call.provider_id), None
        ),
        timeout=20,
        what="the voicemail",
    )
    root = ET.fromstring(str(update["Twiml"]))
    [say] = root.findall("Say")
    assert say.get("voice") == "Google.cmn-TW-Standard-A" and say.get("language") == "cmn-TW"
    assert "1 9 1 1" in (say.text or "")
    # It says who calls, the utility, as the notice would; never whom it calls.
    assert stack.runtime.settings.identity.name in (say.text or "")
    assert acct["name"] not in (say.text or "") and "元" not in (say.text or "")
    assert root.find("Hangup") is not None
    # The detection report replayed, or the task redelivered: the voicemail is not left twice.
    from notifier.flows.voicemail import leave_voicemail

    assert leave_voicemail(stack.runtime, call.id or 0, call.provider_id or "") is False
    assert [u["Sid"] for u in simulators.twilio.call_updates].count(call.provider_id) == 1


def test_a_person_who_hangs_up_at_once_is_not_served_and_gets_a_postcard(
    stack: Stack, simulators: Simulators
) -> None:
    acct = events.account(phone=SHORT_CALL, email=None, push_tokens=None)
    stack.post(events.unpaid(acct, level=2))

    rows = stack.reach(
        acct["account_no"],
        [("sms", "delivered"), ("voice", "undelivered"), ("postcard", "sent")],
    )
    call = rows[1]
    assert call.last_error == "provider: short_call"
    timeline = stack.timeline(call.id)
    assert any(d.get("answered_by") == "human" for _, d in timeline)
    assert ("short_call", "4") in [(s, d.get("call_duration")) for s, d in timeline]
    assert not _served(stack, call)  # no delivered receipt, whoever answered
    assert not [u for u in simulators.twilio.call_updates if u["Sid"] == call.provider_id]
