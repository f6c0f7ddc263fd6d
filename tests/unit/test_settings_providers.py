"""Providers per channel: an ordered list with weights, or one name as before."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from notifier.providers.selection import provider_chain, provider_for
from notifier.settings import Settings


@pytest.mark.parametrize(
    ("listed", "chain", "first"),
    [
        ("sandbox", [("sandbox", 1)], "sandbox"),
        ("mitake,twilio", [("mitake", 1), ("twilio", 0)], "mitake"),  # the second: a standby
        (" mitake , twilio ", [("mitake", 1), ("twilio", 0)], "mitake"),
        ("mitake:3,twilio:1", [("mitake", 3), ("twilio", 1)], "mitake"),
        ("mitake:3,twilio", [("mitake", 3), ("twilio", 1)], "mitake"),
        ("mitake:1,twilio:0,sandbox:0", [("mitake", 1), ("twilio", 0), ("sandbox", 0)], "mitake"),
    ],
)
def test_a_channels_providers_are_read_in_order_with_their_weights(
    listed: str, chain: list[tuple[str, int]], first: str
) -> None:
    settings = Settings(providers={"sms": listed})

    assert provider_chain(settings, "sms") == chain
    assert provider_for(settings, "sms") == first


def test_without_a_list_the_credentials_decide_one_provider() -> None:
    settings = Settings(twilio={"account_sid": "AC1", "auth_token": "t", "from_number": "+1500"})

    assert provider_chain(settings, "sms") == [("twilio", 1)]
    assert provider_chain(settings, "email") == [("sandbox", 1)]


@pytest.mark.parametrize(
    ("listed", "says"),
    [
        ("mitake;twilio", "'mitake;twilio' is not a provider name"),
        ("mitake,", "'' is not a provider name"),
        ("mitake:x", "'mitake:x' is not a provider name"),
        ("mitake:-1", "'mitake:-1' is not a provider name"),
        ("Twilio", "'Twilio' is not a provider name"),
        ("twilio,twilio", "provider 'twilio' is listed twice"),
        ("mitake:0,twilio:0", "at least one provider needs a weight above 0"),
    ],
)
def test_a_bad_list_is_refused_naming_the_setting(listed: str, says: str) -> None:
    with pytest.raises(ValidationError, match="NOTIFIER_PROVIDERS__SMS") as refused:
        Settings(providers={"sms": listed})

    assert says in str(refused.value)
