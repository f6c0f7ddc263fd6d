"""Callback URL tokens: bound to a delivery, a purpose and a time, under our key."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from notifier.deliveries.callback_tokens import (
    TokenRefused,
    callback_url,
    issue,
    public_url,
    read,
    signing_key,
)
from notifier.settings import Settings, TwilioSettings

KEY = b"a-callback-key-for-tests"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
WINDOW = timedelta(hours=72)


def test_a_token_reads_back_as_its_delivery_and_issue_time() -> None:
    token = issue(KEY, 4242, purpose="status", now=NOW)
    assert len(token) == 44 and "4242" not in token
    read_back = read(KEY, token, purpose="status", now=NOW + timedelta(hours=1), window=WINDOW)
    assert (read_back.delivery_id, read_back.issued_at) == (4242, NOW)


def _flip(token: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[index] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("case", "make", "now", "reason"),
    [
        ("another key", lambda: issue(b"other", 1, purpose="status", now=NOW), NOW, "signature"),
        ("the menu's", lambda: issue(KEY, 1, purpose="gather", now=NOW), NOW, "signature"),
        ("another id", lambda: _flip(issue(KEY, 1, purpose="status", now=NOW), 8), NOW, "signature"),
        ("another time", lambda: _flip(issue(KEY, 1, purpose="status", now=NOW), 16), NOW,
         "signature"),
        ("a bit of the MAC", lambda: _flip(issue(KEY, 1, purpose="status", now=NOW), 30), NOW,
         "signature"),
        ("too old", lambda: issue(KEY, 1, purpose="status", now=NOW), NOW + WINDOW
         + timedelta(seconds=1), "outside the window"),
        ("from the future", lambda: issue(KEY, 1, purpose="status", now=NOW + timedelta(hours=1)),
         NOW, "future"),
        ("cut short", lambda: issue(KEY, 1, purpose="status", now=NOW)[:-4], NOW, "malformed"),
        ("not base64", lambda: "%%%" * 15, NOW, "malformed"),
        ("a bare id", lambda: "4242", NOW, "malformed"),
    ],
)  # fmt: skip
def test_a_token_is_refused(case: str, make: object, now: datetime, reason: str) -> None:
    assert callable(make)
    with pytest.raises(TokenRefused, match=reason):
        read(KEY, make(), purpose="status", now=now, window=WINDOW)


def test_only_a_token_whose_mac_holds_names_its_delivery() -> None:
    old = issue(KEY, 77, purpose="status", now=NOW - WINDOW - timedelta(hours=1))
    with pytest.raises(TokenRefused) as expired:
        read(KEY, old, purpose="status", now=NOW, window=WINDOW)
    assert expired.value.delivery_id == 77
    with pytest.raises(TokenRefused) as forged:
        read(KEY, _flip(old, 8), purpose="status", now=NOW, window=WINDOW)
    assert forged.value.delivery_id is None


def test_the_key_is_the_setting_or_derived_from_twilio_when_embedded() -> None:
    given = Settings(callback_key=SecretStr("k" * 32))
    assert signing_key(given) == b"k" * 32
    one = Settings(twilio=TwilioSettings(auth_token=SecretStr("token-one")))
    two = Settings(twilio=TwilioSettings(auth_token=SecretStr("token-two")))
    assert signing_key(one) != signing_key(two)
    assert b"token-one" not in signing_key(one)


def test_deployed_with_twilio_needs_a_callback_key() -> None:
    deployed = {"mode": "deployed", "pay_link_key": SecretStr("a-real-pay-link-key")}
    twilio = TwilioSettings(account_sid="AC" + "0" * 32, auth_token=SecretStr("real-token"))
    with pytest.raises(ValueError, match="NOTIFIER_CALLBACK_KEY"):
        Settings(**deployed, twilio=twilio)
    with pytest.raises(ValueError, match="NOTIFIER_CALLBACK_KEY"):
        Settings(**deployed, twilio=twilio, callback_key=SecretStr("change-me"))
    Settings(**deployed, twilio=twilio, callback_key=SecretStr("a-real-callback-key"))
    Settings(**deployed)  # no Twilio: nothing calls back, nothing to sign


PATH = "/v1/callbacks/twilio/status/tok"
FORWARDED = {"forwarded_proto": "https", "forwarded_host": "notices.example"}


@pytest.mark.parametrize(
    ("settings", "given", "url"),
    [
        # The public URL carries the proxy's prefix; the route path is added once.
        ({"public_url": "https://notices.example/notifier/"}, {}, "https://notices.example/notifier" + PATH),
        # Forwarded headers from an untrusted hop name nothing.
        ({"public_url": "https://notices.example"}, {**FORWARDED, "forwarded_host": "evil.example"},
         "https://notices.example" + PATH),
        # A trusted proxy's headers (the first hop of a chain) and the root path name it.
        ({"public_url": "http://10.0.0.5:8000", "trust_forwarded_headers": True},
         {"forwarded_proto": "https, http", "forwarded_host": "notices.example, 10.0.0.5",
          "root_path": "/notifier"}, "https://notices.example/notifier" + PATH),
        # Trusted, but no forwarded host: the setting still holds.
        ({"public_url": "https://notices.example", "trust_forwarded_headers": True}, {},
         "https://notices.example" + PATH),
    ],
)  # fmt: skip
def test_the_public_url_a_signature_covers(
    settings: dict[str, object], given: dict[str, str], url: str
) -> None:
    assert public_url(Settings.model_validate(settings), PATH, **given) == url


def test_a_query_is_kept_and_the_url_given_to_twilio_is_the_one_checked() -> None:
    settings = Settings(public_url="https://notices.example/notifier")
    assert public_url(settings, PATH, query="bodySHA256=ab") == (
        "https://notices.example/notifier" + PATH + "?bodySHA256=ab"
    )
    assert callback_url(settings, "status", "tok") == public_url(settings, PATH)
