"""The voice settings: a dial number Twilio can dial, a voice per notice language."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from notifier.providers.selection import provider_options
from notifier.settings import Settings


@pytest.mark.parametrize(
    "number", ["1911", "0223456789", "+886 2 2345 6789", "+8860000", "tel:1911"]
)
def test_a_dial_number_that_is_not_e164_is_refused_naming_the_setting(number: str) -> None:
    with pytest.raises(
        ValidationError, match=r"NOTIFIER_SERVICE_DIAL_NUMBER must be a valid E\.164"
    ):
        Settings(service_dial_number=number)


def test_the_menu_dials_the_e164_number_while_notices_keep_the_printed_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFIER_SERVICE_DIAL_NUMBER", "+886223456789")
    monkeypatch.setenv(
        "NOTIFIER_VOICE__VOICES", '{"en": {"voice": "Polly.Matthew-Neural", "language": "en-US"}}'
    )
    settings = Settings(twilio={"account_sid": "AC1", "auth_token": "t", "from_number": "+1500"})

    options = provider_options(settings, "voice", "twilio")

    assert settings.service_phone == "1911"
    assert options["dial_number"] == "+886223456789"
    assert options["voices"] == {"en": {"voice": "Polly.Matthew-Neural", "language": "en-US"}}
    assert options["machine_detection"] == "DetectMessageEnd"
    assert "service_line" not in options


def test_by_default_zh_tw_is_read_by_a_taiwanese_mandarin_voice() -> None:
    voices = Settings().voice.voices
    assert (voices["zh-TW"].voice, voices["zh-TW"].language) == (
        "Google.cmn-TW-Standard-A",
        "cmn-TW",
    )
    assert voices["en"].language == "en-US"
