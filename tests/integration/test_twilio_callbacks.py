"""Twilio's callbacks into the API: a token URL per delivery, Twilio's signature, a window.

A stack runs the real twilio SDK against the simulator, which posts its signed
status callbacks to whatever URL each message named. Requests made here are
signed as Twilio signs them (``RequestValidator.compute_signature``), so each
test changes one thing: the signature, the token, or its age.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import uvicorn
from sqlmodel import col, select
from starlette.datastructures import MultiDict
from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, RequestValidator

from notifier.accounts.models import Account
from notifier.app import create_app
from notifier.auth import keys
from notifier.db import utcnow
from notifier.deliveries import callback_tokens
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.providers.simulated import Simulators
from notifier.webhooks.models import ProducerCallback
from tests.support import events
from tests.support.stack import Stack, build_stack, free_port, wait_until
from tests.support.twilio import callback_path, flush_reports, signed

SHARED_KEY = "shared-key-secret-of-a-twilio-webhook-setting"
TOKEN_PATH = re.compile(r"^/v1/callbacks/twilio/(status|gather)/(?P<token>[A-Za-z0-9_-]{44})$")


@pytest.fixture(scope="module")
def stack(simulators: Simulators, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        **simulators.env,
        "NOTIFIER_PROVIDERS": "{}",  # the real twilio adapter
        "NOTIFIER_TWILIO__WEBHOOK_SHARED_KEY": SHARED_KEY,
    }
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
    stack: Stack, simulators: Simulators, caplog: pytest.LogCaptureFixture
) -> None:
    sms, other = _sms(stack), _sms(stack)
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": "undelivered"}
    before = _timeline(stack, sms.id), _timeline(stack, other.id)
    genuine = callback_path(stack, sms.id).rsplit("/", 1)[1]
    raw = bytearray(base64.urlsafe_b64decode(genuine + "="))
    raw[8] ^= 1  # another delivery id under the same MAC
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    # A valid token, but for the other delivery: this message is not one of its sends. The
    # token and signature hold, so the report is answered; applying it refuses it, in the log.
    caplog.set_level(logging.WARNING, logger="notifier.flows.report_buffer")
    foreign = callback_path(stack, other.id)
    answer = stack.client.post(
        foreign, data=params, headers=signed(stack, foreign, params, simulators.auth_token)
    )
    assert answer.status_code == 204
    flush_reports(stack)
    [refusal] = [r.getMessage() for r in caplog.records if r.name == "notifier.flows.report_buffer"]
    assert f"delivery {other.id} sent no provider message" in refusal
    paths = [
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
    flush_reports(stack)
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
    flush_reports(stack)
    assert _status(stack, sms.id) == "delivered"
    assert stack.client.post(path, data=params, headers=headers).status_code == 204  # replayed
    simulators.twilio.wait_callbacks(timeout=15)  # Twilio's sent and delivered arrive too
    flush_reports(stack)
    reports = [
        (status, detail["provider_status"])
        for status, detail in _timeline(stack, sms.id)
        if detail.get("report")
    ]
    # Twilio's late "sent" says what our own record of the send says: nothing kept.
    assert reports == [("delivered", "delivered")]
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
    flush_reports(stack)
    assert _timeline(stack, sms.id)[-1][1]["sid"] == earlier_sid


# -- the URL the signature covers: a root path, a proxy ---------------------------------


@contextmanager
def _app_behind_a_proxy(stack: Stack, root_path: str, **settings: object) -> Iterator[str]:
    """The service's app under uvicorn ``--root-path``, as deployed behind a proxy that
    strips the prefix; yields the address the proxy forwards to."""
    app = create_app(stack.settings.model_copy(update=settings))
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=free_port(), root_path=root_path, log_config=None
        )
    )
    thread = threading.Thread(target=server.run, name="api-root-path", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=30, what="the app under a root path")
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _held_sms(stack: Stack, simulators: Simulators) -> Delivery:
    """An SMS sent and not yet reported on (the simulator's own reports come 3 s later)."""
    acct = events.account(email=None, push_tokens=None)
    simulators.twilio.callback_delay = 3.0
    try:
        stack.post(events.unpaid(acct))
        [sms] = wait_until(
            lambda: [d for d in stack.deliveries(acct["account_no"]) if d.status == "sent"],
            timeout=60,
            what="the SMS to be sent",
        )
    finally:
        simulators.twilio.callback_delay = 0.05
    return sms


def test_under_a_root_path_the_signature_covers_the_public_url_with_the_prefix_once(
    stack: Stack, simulators: Simulators
) -> None:
    public = "https://notices.utility.example/notifier"
    sms = _sms(stack)
    path = callback_path(stack, sms.id)
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": "read"}
    validator = RequestValidator(simulators.auth_token)
    with _app_behind_a_proxy(stack, "/notifier", public_url=public) as forwarded_to:
        doubled = validator.compute_signature(f"{public}/notifier{path}", params)
        answer = httpx.post(
            forwarded_to + path, data=params, headers={"X-Twilio-Signature": doubled}
        )
        assert answer.status_code == 403
        once = validator.compute_signature(public + path, params)
        answer = httpx.post(forwarded_to + path, data=params, headers={"X-Twilio-Signature": once})
        assert answer.status_code == 204
    assert _timeline(stack, sms.id)[-1][1]["provider_status"] == "read"


def test_forwarded_host_and_scheme_count_only_from_a_trusted_proxy(
    stack: Stack, simulators: Simulators
) -> None:
    sms = _sms(stack)
    path = callback_path(stack, sms.id)
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": "read"}
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "notices.utility.example"}
    validator = RequestValidator(simulators.auth_token)
    as_forwarded = validator.compute_signature(
        "https://notices.utility.example/notifier" + path, params
    )
    headers = {**forwarded, "X-Twilio-Signature": as_forwarded}
    # Not trusted (the default): the headers name nothing, NOTIFIER_PUBLIC_URL does.
    with _app_behind_a_proxy(stack, "/notifier") as forwarded_to:
        assert httpx.post(forwarded_to + path, data=params, headers=headers).status_code == 403
    with _app_behind_a_proxy(stack, "/notifier", trust_forwarded_headers=True) as forwarded_to:
        assert httpx.post(forwarded_to + path, data=params, headers=headers).status_code == 204
        # Trusted, but the signature was made for another host: still refused.
        other = {**headers, "X-Forwarded-Host": "elsewhere.example"}
        assert httpx.post(forwarded_to + path, data=params, headers=other).status_code == 403
    reads = [d for s, d in _timeline(stack, sms.id) if d.get("provider_status") == "read"]
    assert len(reads) == 1


# -- what the signature covers: repeated keys, a shared key with HMAC-SHA256, JSON -------


def test_a_repeated_form_key_is_signed_over_all_its_values(
    stack: Stack, simulators: Simulators
) -> None:
    sms = _sms(stack)
    path = callback_path(stack, sms.id)
    form = [
        ("MessageSid", sms.provider_id or ""),
        ("MessageStatus", "read"),
        ("StatusCallbackEvent", "initiated"),
        ("StatusCallbackEvent", "ringing"),
    ]
    validator = RequestValidator(simulators.auth_token)
    url = stack.base_url + path
    body = urlencode(form)
    content = {"Content-Type": "application/x-www-form-urlencoded"}
    last_only = validator.compute_signature(url, dict(form))  # one value of the two
    answer = stack.client.post(
        path, content=body, headers={**content, "X-Twilio-Signature": last_only}
    )
    assert answer.status_code == 403
    as_twilio = validator.compute_signature(url, MultiDict(form))
    answer = stack.client.post(
        path, content=body, headers={**content, "X-Twilio-Signature": as_twilio}
    )
    assert answer.status_code == 204


def test_a_shared_key_signature_with_hmac_sha256_is_accepted(
    stack: Stack, simulators: Simulators
) -> None:
    sms = _sms(stack)
    path = callback_path(stack, sms.id)
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": "read"}
    url = stack.base_url + path
    sha256 = {SIGNATURE_SETTINGS_HEADER: "key=KS0123456789abcdef,algorithm=HMAC_SHA256"}

    def post(secret: str, algorithm: str, settings: dict[str, str]) -> int:
        signature = RequestValidator(secret).compute_signature(url, params, algorithm)
        headers = {**settings, "X-Twilio-Signature": signature}
        return stack.client.post(path, data=params, headers=headers).status_code

    assert post(simulators.auth_token, "HMAC_SHA256", sha256) == 403  # the key signs, not the token
    assert post(SHARED_KEY, "HMAC_SHA1", sha256) == 403  # the header's algorithm, not another
    assert post(SHARED_KEY, "HMAC_SHA256", {}) == 403  # no header: the auth token and SHA-1
    unknown = {SIGNATURE_SETTINGS_HEADER: "key=KS0123456789abcdef,algorithm=HMAC_SHA512"}
    assert post(SHARED_KEY, "HMAC_SHA256", unknown) == 403
    assert post(SHARED_KEY, "HMAC_SHA256", sha256) == 204
    flush_reports(stack)
    assert _timeline(stack, sms.id)[-1][1]["provider_status"] == "read"


def test_a_json_body_is_signed_through_its_body_sha256(
    stack: Stack, simulators: Simulators
) -> None:
    sms = _sms(stack)
    body = json.dumps({"MessageSid": sms.provider_id, "MessageStatus": "read"})
    digest = hashlib.sha256(body.encode()).hexdigest()
    path = f"{callback_path(stack, sms.id)}?bodySHA256={digest}"
    signature = RequestValidator(simulators.auth_token).compute_signature(stack.base_url + path, {})
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    tampered = body.replace("read", "failed")
    assert stack.client.post(path, content=tampered, headers=headers).status_code == 403
    assert stack.client.post(path, content=body, headers=headers).status_code == 204
    flush_reports(stack)
    assert _timeline(stack, sms.id)[-1][1]["provider_status"] == "read"
    assert _status(stack, sms.id) == "delivered"


# -- what a report says: ErrorCode and the statuses beyond delivered/failed -------------


def _producer_with_a_url(stack: Stack) -> dict[str, str]:
    """A producer key of its own with a callback URL, so callbacks are owed to it (nothing
    listens there: the test reads what is owed)."""
    with stack.db() as session:
        _, key = keys.create_key(session, role="producer", name=f"billing {secrets.token_hex(3)}")
    producer = {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{free_port()}/notifier-events"
    answer = stack.client.put("/v1/producer/callback", json={"url": url}, headers=producer)
    assert answer.status_code == 201, answer.text
    return producer


def _account(stack: Stack, account_no: str) -> Account:
    with stack.db() as session:
        account = session.get(Account, account_no)
        assert account is not None
        return account


@pytest.mark.parametrize(
    ("code", "reason"), [("30003", "unreachable"), ("30005", "unknown_destination")]
)
def test_an_unreachable_or_unknown_number_is_marked_on_the_account_and_not_called(
    stack: Stack, code: str, reason: str
) -> None:
    phone = f"+8869123{code}"
    acct = events.account(phone=phone, email=None, push_tokens=None)
    producer = _producer_with_a_url(stack)
    answer = stack.client.post("/v1/events", json=events.unpaid(acct), headers=producer)
    assert answer.status_code == 202, answer.text
    # The fallback skips a call to the same dead number: the postcard goes instead.
    sms, card = stack.reach(acct["account_no"], [("sms", "undelivered"), ("postcard", "sent")])
    assert card.fallback_of == sms.id
    assert _timeline(stack, sms.id)[-2][1]["error_code"] == code
    account = _account(stack, acct["account_no"])
    assert (account.invalid_phone, account.phone_invalid_reason) == (phone, reason)
    with stack.db() as session:
        owed = session.exec(
            select(ProducerCallback).where(ProducerCallback.type == "account.contact_invalid")
        ).all()
    [told] = [c.body for c in owed if c.body["account_no"] == acct["account_no"]]
    assert (told["contact"], told["reason"], told["escalation_id"]) == ("phone", reason, None)
    assert phone not in json.dumps(told)
    # The next notice neither texts nor calls it.
    stack.client.post("/v1/events", json=events.unpaid(acct, level=2), headers=producer)
    later = stack.settled(acct["account_no"], count=3)[2:]
    assert [d.channel for d in later] == ["postcard"]


def test_a_landline_gets_no_more_sms_and_the_next_notice_calls_it(stack: Stack) -> None:
    landline = "+886912330006"  # what the carrier says, whatever the number looks like
    acct = events.account(phone=landline, email=None, push_tokens=None, address=None)
    stack.post(events.unpaid(acct))
    sms, call = stack.reach(acct["account_no"], [("sms", "undelivered"), ("voice", "delivered")])
    assert call.fallback_of == sms.id and call.recipients == [landline]
    account = _account(stack, acct["account_no"])
    assert account.sms_unable_phone == landline and account.invalid_phone is None
    stack.post(events.unpaid(acct, level=2))
    later = stack.reach(
        acct["account_no"],
        [("sms", "undelivered"), ("voice", "delivered"), ("voice", "delivered")],
    )
    assert later[2].fallback_of is None  # planned as a call, not a fallback from an SMS


@pytest.mark.parametrize(
    ("twilio_status", "ours"), [("canceled", "failed"), ("partially_delivered", "undelivered")]
)
def test_a_canceled_or_partly_delivered_sms_is_not_served_and_falls_back(
    stack: Stack, simulators: Simulators, twilio_status: str, ours: str
) -> None:
    sms = _held_sms(stack, simulators)
    path = callback_path(stack, sms.id)
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": twilio_status}
    headers = signed(stack, path, params, simulators.auth_token)
    assert stack.client.post(path, data=params, headers=headers).status_code == 204
    flush_reports(stack)
    assert _status(stack, sms.id) == ours
    rows = stack.reach(sms.account_no, [("sms", ours), ("voice", "delivered")])
    assert rows[1].fallback_of == sms.id
    simulators.twilio.wait_callbacks(timeout=15)  # its late "delivered" changes nothing
    flush_reports(stack)
    assert _status(stack, sms.id) == ours
