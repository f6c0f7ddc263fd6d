"""The bounce address of one email: signed, per delivery, and only ours is read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from notifier.bounces.verp import bounce_address, read_address, token_of
from notifier.deliveries.callback_tokens import TokenRefused
from notifier.settings import BounceSettings, Settings

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def settings(**bounces: object) -> Settings:
    return Settings(
        callback_key=SecretStr("a-key-for-tests"),
        bounces=BounceSettings.model_validate({"domain": "bounces.utility.example", **bounces}),
    )


def test_the_address_names_its_delivery_and_fits_in_a_local_part() -> None:
    address = bounce_address(settings(), 4242, now=NOW)

    assert address is not None
    local, _, domain = address.partition("@")
    assert domain == "bounces.utility.example" and local.startswith("bounces+")
    assert len(local) <= 64  # RFC 5321 §4.5.3.1.1
    token = token_of(settings(), address)
    assert token and "4242" not in token
    assert read_address(settings(), token, now=NOW + timedelta(days=5)).delivery_id == 4242


def test_no_bounce_domain_no_address() -> None:
    assert bounce_address(Settings(), 1, now=NOW) is None


@pytest.mark.parametrize(
    ("address", "token"),
    [
        ("bounces+abc@bounces.utility.example", "abc"),
        ("<Bounces+abc@BOUNCES.utility.example>", "abc"),  # the fixed parts in any case
        ("bounces@bounces.utility.example", ""),  # ours, to be matched on the Message-ID
        ("postmaster@bounces.utility.example", None),
        ("bounces+abc@utility.example", None),
        ("bounces+abc@evil.example", None),
        ("not an address", None),
    ],
)
def test_only_our_bounce_addresses_are_ours(address: str, token: str | None) -> None:
    assert token_of(settings(), address) == token


def test_a_token_signed_under_another_key_or_too_old_is_refused() -> None:
    address = bounce_address(settings(), 7, now=NOW)
    assert address is not None
    token = token_of(settings(), address)
    assert token is not None
    other = settings().model_copy(update={"callback_key": SecretStr("another-key")})

    with pytest.raises(TokenRefused, match="signature"):
        read_address(other, token, now=NOW)
    with pytest.raises(TokenRefused, match="outside the window"):
        read_address(settings(window_days=30), token, now=NOW + timedelta(days=31))


def test_deployed_with_a_bounce_domain_needs_a_callback_key() -> None:
    deployed: dict[str, Any] = {"mode": "deployed", "pay_link_key": SecretStr("a-real-pay-key")}
    bounces = BounceSettings(domain="bounces.utility.example")
    with pytest.raises(ValueError, match=r"NOTIFIER_CALLBACK_KEY .* NOTIFIER_BOUNCES__DOMAIN"):
        Settings(**deployed, bounces=bounces)
    Settings(**deployed, bounces=bounces, callback_key=SecretStr("a-real-callback-key"))
