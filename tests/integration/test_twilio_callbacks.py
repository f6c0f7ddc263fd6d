"""Twilio's callbacks into the API: a token URL per delivery, Twilio's signature, a window.

A stack runs the real twilio SDK against the simulator, which posts its signed
status callbacks to whatever URL each message named. Requests made here are
signed as Twilio signs them (``RequestValidator.compute_signature``), so each
test changes one thing: the signature, the token, or its age.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlmodel import col, select

from notifier.db import utcnow
from notifier.deliveries import callback_tokens
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.providers.simulated import Simulators
from tests.support import events
from tests.support.stack import Stack, build_stack, wait_until
from tests.support.twilio import callback_path, signed

TOKEN_PATH = re.compile(r"^/v1/callbacks/twilio/(status|gather)/(?P<token>[A-Za-z0-9_-]{44})$")


@pytest.fixture(scope="module")
def stack(simulators: Simulators, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**simulators.env, "NOTIFIER_PROVIDERS": "{}"}  # the real twilio adapter
    built = build_stack("sqlite-filesystem-twilio", tmp_path_factory.mktemp("twilio"), env)
    yield built
    built.close()


def _sms(stack: Stack) -> Delivery:
    """A delivered SMS (its account has no other channel)."""
    acct = events.account(email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    [sms] = stack.reach(acct["account_no"], [("sms", "delivered")])
    return sms


def _timeline(stack: Stack, delivery_id: int | None) -> list[tuple[str, dict[str, object]]]:
    with stack.db() as session:
        rows = session.exec(
            select(DeliveryChange)
            .where(DeliveryChange.delivery_id == delivery_id)
            .order_by(col(DeliveryChange.id))
        ).all()
    return [(row.status, row.detail) for row in rows]


def _status(stack: Stack, delivery_id: int | None) -> str:
    with stack.db() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        return row.status


def test_a_callback_url_carries_a_signed_token_not_the_delivery_id(
    stack: Stack, simulators: Simulators
) -> None:
    sms = _sms(stack)
    [message] = [m for m in simulators.twilio.messages if m["Sid"] == sms.provider_id]
    url = urlsplit(message["StatusCallback"])
    match = TOKEN_PATH.match(url.path)
    assert match and not url.query, url.path
    assert not url.path.endswith(f"/{sms.id}")
    token = callback_tokens.read(
        callback_tokens.signing_key(stack.settings),
        match["token"],
        purpose="status",
        now=utcnow(),
        window=timedelta(hours=1),
    )
    assert token.delivery_id == sms.id
    simulators.twilio.wait_callbacks()
    answered = [c["status"] for c in simulators.twilio.callbacks_sent if c["url"] == url.geturl()]
    assert answered == [204, 204]  # sent, then delivered


def test_a_forged_or_missing_signature_is_refused(stack: Stack, simulators: Simulators) -> None:
    sms = _sms(stack)
    path = callback_path(stack, sms.id)
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": "undelivered"}
    before = _timeline(stack, sms.id)
    forged = signed(stack, path, params, "not-the-auth-token")
    assert stack.client.post(path, data=params, headers=forged).status_code == 403
    assert stack.client.post(path, data=params).status_code == 403
    good = signed(stack, path, params, simulators.auth_token)
    changed = {**params, "MessageStatus": "failed"}  # the signature no longer covers the form
    assert stack.client.post(path, data=changed, headers=good).status_code == 403
    assert _timeline(stack, sms.id) == before
    assert _status(stack, sms.id) == "delivered"


def test_a_token_for_another_delivery_or_tampered_or_foreign_is_refused(
    stack: Stack, simulators: Simulators
) -> None:
    sms, other = _sms(stack), _sms(stack)
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": "undelivered"}
    before = _timeline(stack, sms.id), _timeline(stack, other.id)
    genuine = callback_path(stack, sms.id).rsplit("/", 1)[1]
    raw = bytearray(base64.urlsafe_b64decode(genuine + "="))
    raw[8] ^= 1  # another delivery id under the same MAC
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    paths = [
        # A valid token, but for the other delivery: this message is not one of its sends.
        callback_path(stack, other.id),
        f"/v1/callbacks/twilio/status/{tampered}",
        callback_path(stack, sms.id, key=b"someone else's key"),
        callback_path(stack, sms.id, "gather").replace("/gather/", "/status/"),
        f"/v1/callbacks/twilio/status/{sms.id}",  # the old, guessable form
    ]
    for path in paths:
        headers = signed(stack, path, params, simulators.auth_token)  # Twilio's check passes
        answer = stack.client.post(path, data=params, headers=headers)
        assert answer.status_code == 403, path
    assert (_timeline(stack, sms.id), _timeline(stack, other.id)) == before
    assert (_status(stack, sms.id), _status(stack, other.id)) == ("delivered", "delivered")


def test_a_token_older_than_the_window_is_refused_and_logged_without_personal_data(
    stack: Stack, simulators: Simulators, caplog: pytest.LogCaptureFixture
) -> None:
    sms = _sms(stack)
    window = timedelta(hours=stack.settings.callback_window_hours)
    params = {
        "MessageSid": sms.provider_id or "",
        "MessageStatus": "read",
        "To": sms.recipients[0],
    }
    old = callback_path(stack, sms.id, issued_at=utcnow() - window - timedelta(minutes=5))
    caplog.set_level(logging.INFO, logger="notifier.api.callbacks")
    answer = stack.client.post(
        old, data=params, headers=signed(stack, old, params, simulators.auth_token)
    )
    assert answer.status_code == 403
    [refusal] = [r for r in caplog.records if r.name == "notifier.api.callbacks"]
    line = refusal.getMessage()
    assert f"delivery {sms.id}" in line and "outside the window" in line
    assert sms.recipients[0] not in line and old.rsplit("/", 1)[1] not in line
    # Just inside the window the same report is taken.
    recent = callback_path(stack, sms.id, issued_at=utcnow() - window + timedelta(minutes=5))
    answer = stack.client.post(
        recent, data=params, headers=signed(stack, recent, params, simulators.auth_token)
    )
    assert answer.status_code == 204
    assert _timeline(stack, sms.id)[-1][1]["provider_status"] == "read"


def test_a_valid_callback_moves_the_delivery_and_the_same_callback_again_changes_nothing(
    stack: Stack, simulators: Simulators
) -> None:
    acct = events.account(email=None, push_tokens=None)
    simulators.twilio.callback_delay = 3.0  # Twilio's own reports come after ours
    try:
        stack.post(events.unpaid(acct))
        [sms] = wait_until(
            lambda: [d for d in stack.deliveries(acct["account_no"]) if d.status == "sent"],
            timeout=60,
            what="the SMS to be sent",
        )
    finally:
        simulators.twilio.callback_delay = 0.05
    [message] = [m for m in simulators.twilio.messages if m["Sid"] == sms.provider_id]
    path = urlsplit(message["StatusCallback"]).path  # the very URL the worker gave Twilio
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": "delivered"}
    headers = signed(stack, path, params, simulators.auth_token)
    assert stack.client.post(path, data=params, headers=headers).status_code == 204
    assert _status(stack, sms.id) == "delivered"
    assert stack.client.post(path, data=params, headers=headers).status_code == 204  # replayed
    simulators.twilio.wait_callbacks(timeout=15)  # Twilio's sent and delivered arrive too
    reports = [
        (status, detail["provider_status"])
        for status, detail in _timeline(stack, sms.id)
        if detail.get("report")
    ]
    assert reports == [("delivered", "delivered"), ("report", "sent")]
    assert _status(stack, sms.id) == "delivered"


def test_the_voice_menu_needs_a_menu_token_for_that_call(
    stack: Stack, simulators: Simulators
) -> None:
    acct = events.account(email=None, push_tokens=None)
    stack.post(events.unpaid(acct, level=2))
    rows = stack.reach(acct["account_no"], [("sms", "delivered"), ("voice", "delivered")])
    call, sms = rows[1], rows[0]
    [placed] = [c for c in simulators.twilio.calls if c["Sid"] == call.provider_id]
    [action] = re.findall(r'action="([^"]+)"', placed["Twiml"])
    menu = urlsplit(action).path
    assert TOKEN_PATH.match(menu) and "/gather/" in menu
    params = {"CallSid": call.provider_id or "", "Digits": "1"}
    answer = stack.client.post(
        menu, data=params, headers=signed(stack, menu, params, simulators.auth_token)
    )
    assert answer.status_code == 200 and "<Say" in answer.text
    assert f'action="{stack.base_url}{menu}"' in answer.text  # a repeat keeps its menu
    refused = [
        callback_path(stack, call.id, "status").replace("/status/", "/gather/"),
        callback_path(stack, sms.id, "gather"),  # a token for a delivery that placed no call
        "/v1/callbacks/twilio/gather",
    ]
    for path in refused:
        answer = stack.client.post(
            path, data=params, headers=signed(stack, path, params, simulators.auth_token)
        )
        assert answer.status_code in (403, 404, 405), path
        assert answer.status_code != 200


def test_a_report_for_an_earlier_attempt_of_the_delivery_is_kept_as_history(
    stack: Stack, simulators: Simulators
) -> None:
    sms = _sms(stack)
    earlier_sid = sms.provider_id or ""
    # A later attempt at Twilio (a new message) is now the delivery's provider id.
    with stack.db() as session:
        row = session.get(Delivery, sms.id)
        assert row is not None
        row.provider_id = "SM" + "1" * 32
        session.add(row)
        deliveries.record_change(session, row.id or 0, "sent", provider_id=row.provider_id)
    path = callback_path(stack, sms.id)
    params = {"MessageSid": earlier_sid, "MessageStatus": "read"}
    answer = stack.client.post(
        path, data=params, headers=signed(stack, path, params, simulators.auth_token)
    )
    assert answer.status_code == 204
    assert _timeline(stack, sms.id)[-1][1]["sid"] == earlier_sid
