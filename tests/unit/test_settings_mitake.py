"""The Mitake settings: chosen per channel, its options, a callback key when deployed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import channels
from channels.mitake_sms import MitakeSms
from notifier.providers.selection import provider_for, provider_options
from notifier.settings import Settings


def test_providers_sms_mitake_selects_it_with_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_PROVIDERS__SMS", "mitake")
    monkeypatch.setenv("NOTIFIER_MITAKE__USERNAME", "utility")
    monkeypatch.setenv("NOTIFIER_MITAKE__PASSWORD", "secret")
    monkeypatch.setenv("NOTIFIER_MITAKE__MAX_LENGTH", "70")
    settings = Settings()

    assert provider_for(settings, "sms") == "mitake"
    options = provider_options(settings, "sms", "mitake")
    assert options["password"] == "secret" and options["max_length"] == 70
    assert options["base_url"] == "https://smsapi.mitake.com.tw" and options["callback"] is True
    assert isinstance(channels.create("sms", "mitake", **options), MitakeSms)
    assert settings.rate_limits["mitake"] == 20.0
    assert "secret" not in repr(settings.mitake)  # a SecretStr


def test_deployed_with_mitake_reports_a_callback_key_is_required() -> None:
    with pytest.raises(
        ValidationError, match="NOTIFIER_CALLBACK_KEY must be set when deployed with Mitake"
    ):
        Settings(mode="deployed", pay_link_key="k", mitake={"username": "u", "password": "p"})
    Settings(
        mode="deployed",
        pay_link_key="k",
        mitake={"username": "u", "password": "p", "callback": False},
    )


def test_a_client_id_prefix_too_long_for_mitakes_36_characters_is_refused() -> None:
    with pytest.raises(ValidationError, match="client_id_prefix"):
        Settings(mitake={"client_id_prefix": "x" * 13})
