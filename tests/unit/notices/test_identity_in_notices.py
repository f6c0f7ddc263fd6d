"""The utility's identity (Settings.identity) in what customers get: calls, emails' From and footer."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from email.headerregistry import Address
from pathlib import Path
from typing import Any

import pytest

from channels.base import Message
from channels.twilio_voice import TwilioVoice
from notifier.notices.rendering import Renderer, sample_context
from notifier.providers.selection import provider_options
from notifier.settings import Settings

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
NORTH = {
    "name": "北海電力公司",
    "name_en": "North Sea Power",
    "sender_name": "北海電力公司 客戶服務處",
    "sender_address": "notices@northsea.example",
    "service_phone": "0800012345",
    "website": "https://www.northsea.example",
}
VOICES = ["bill.unpaid", "bill.corrected", "usage.abnormal", "collection.final_demand"]


def context(event_type: str, language: str, settings: Settings) -> dict[str, Any]:
    ctx = sample_context(event_type, level=2)
    ctx.update(
        language=language, utility=settings.identity.context(), service_phone=settings.service_phone
    )
    return ctx


def call(body: str, language: str) -> ET.Element:
    voice = TwilioVoice(
        account_sid="AC" + "0" * 32,
        auth_token="token",
        from_number="+15005550006",
        gather_url="https://notices.example/gather",
        base_url="http://127.0.0.1:9",
    )
    return ET.fromstring(
        voice.twiml(Message(1, "voice", ("+886912345678",), body, language=language))
    )


@pytest.mark.parametrize("event_type", VOICES)
@pytest.mark.parametrize(
    ("language", "greeting"), [("zh-TW", "這裡是北海電力公司"), ("en", "this is North Sea Power")]
)
def test_the_call_greets_the_customer_in_the_utility_s_name(
    event_type: str, language: str, greeting: str
) -> None:
    settings = Settings(identity=NORTH)
    body = (
        Renderer(TEMPLATES)
        .render(event_type, "voice", language, context(event_type, language, settings))
        .body
    )

    first_say = next(call(body, language).iter("Say"))

    first_sentence = "".join(first_say.itertext()).splitlines()[0]
    assert greeting in first_sentence


@pytest.mark.parametrize("language", ["zh-TW", "en"])
def test_an_email_footer_says_the_configured_phone_and_website(language: str) -> None:
    settings = Settings(identity=NORTH)
    rendered = Renderer(TEMPLATES).render(
        "bill.unpaid", "email", language, context("bill.unpaid", language, settings)
    )

    assert rendered.html is not None
    for part in (rendered.body, rendered.html):
        assert "0800012345" in part and "www.northsea.example" in part
        assert ("北海電力公司" if language == "zh-TW" else "North Sea Power") in part
        assert "1911" not in part  # the demo's number is nowhere once another is set


def test_emails_come_from_the_utility_s_sender_name_and_address() -> None:
    options = provider_options(
        Settings(identity=NORTH, smtp={"host": "mail.example"}), "email", "smtp"
    )

    assert Address(display_name=options["from_name"], addr_spec=options["from_address"]) == Address(
        display_name="北海電力公司 客戶服務處", addr_spec="notices@northsea.example"
    )


def test_an_smtp_from_set_on_its_own_still_wins() -> None:
    settings = Settings(
        identity=NORTH, smtp={"from_address": "billing@northsea.example", "from_name": "Billing"}
    )

    assert (settings.smtp.from_name, settings.smtp.from_address) == (
        "Billing",
        "billing@northsea.example",
    )


def test_the_old_service_phone_setting_and_the_identity_s_are_one() -> None:
    assert Settings(service_phone="0800111222").identity.service_phone == "0800111222"
    assert Settings(identity={"service_phone": "0800333444"}).service_phone == "0800333444"
    assert Settings().identity.service_phone == Settings().service_phone == "1911"
    with pytest.raises(ValueError, match=r"NOTIFIER_SERVICE_PHONE .* disagree"):
        Settings(service_phone="0800111222", identity={"service_phone": "0800333444"})


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("postal_code", "35A", "NOTIFIER_IDENTITY__POSTAL_CODE"),
        ("postal_code", "3515", "NOTIFIER_IDENTITY__POSTAL_CODE"),
        ("website", "http://www.northsea.example", "NOTIFIER_IDENTITY__WEBSITE"),
        ("website", "", "NOTIFIER_IDENTITY__WEBSITE"),
        ("logo_url", "javascript:alert(1)", "NOTIFIER_IDENTITY__LOGO_URL"),
        ("sender_address", "not an address", "NOTIFIER_IDENTITY__SENDER_ADDRESS"),
        ("logo_file", "/nowhere/logo.png", "NOTIFIER_IDENTITY__LOGO_FILE"),
        ("logo_file", "/etc/hostname", "NOTIFIER_IDENTITY__LOGO_FILE"),
    ],
)
def test_a_bad_identity_setting_is_refused_naming_it(field: str, value: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Settings(identity={field: value})
