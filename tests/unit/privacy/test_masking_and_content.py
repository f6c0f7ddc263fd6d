"""Personal data as logs show it, and how many SMS parts a text takes."""

from __future__ import annotations

import pytest

from notifier.notices.content import sms_segments
from notifier.privacy.masking import (
    mask_account_no,
    mask_address,
    mask_email,
    mask_phone,
    mask_recipient,
)

# --- masking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+886912345678", "+886 912 ***678"),
        ("+886223456789", "+886 223 ***789"),
        ("+14155550123", "+1 415 ***123"),
        ("not a number", "***"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("alice@example.com", "a***@example.com"),
        ("a@example.com", "a***@example.com"),
        ("no-at-sign", "***"),
    ],
)
def test_mask_email(email: str, masked: str) -> None:
    assert mask_email(email) == masked


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("苗栗縣頭份市中正路1號", "苗栗縣頭份市…"),
        ("臺北市中正區重慶南路一段122號", "臺北市中正區…"),
        ("新北市板橋區中山路一段161號", "新北市板橋區…"),
        ("彰化縣鹿港鎮中山路100號", "彰化縣鹿港鎮…"),
        ("臺東縣池上鄉中山路1號", "臺東縣池上鄉…"),
        ("No. 1, Zhongzheng Rd., Toufen", "Toufen …"),
    ],
)
def test_mask_address_cuts_to_the_district(address: str, masked: str) -> None:
    assert mask_address(address) == masked


def test_mask_account_no_keeps_head_and_tail() -> None:
    assert mask_account_no("01234567890") == "012****7890"


@pytest.mark.parametrize(
    ("channel", "recipient", "masked"),
    [
        ("sms", "+886912345678", "+886 912 ***678"),
        ("voice", "+886223456789", "+886 223 ***789"),
        ("email", "alice@example.com", "a***@example.com"),
        ("postcard", "苗栗縣頭份市中正路1號", "苗栗縣頭份市…"),
        ("push", "tok-abcdefghijkl", "tok-ab…"),
    ],
)
def test_mask_recipient_by_channel(channel: str, recipient: str, masked: str) -> None:
    assert mask_recipient(channel, recipient) == masked


# --- SMS segments ---------------------------------------------------------------------------

EMOJI = "\N{GRINNING FACE}"  # outside the BMP: two UTF-16 code units


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        pytest.param("", 1, id="empty"),
        # GSM-7: 160 in one part, 153 per part when split
        pytest.param("a" * 160, 1, id="gsm-160"),
        pytest.param("a" * 161, 2, id="gsm-161"),
        pytest.param("a" * 306, 2, id="gsm-306"),
        pytest.param("a" * 307, 3, id="gsm-307"),
        # UCS-2: 70 in one part, 67 per part when split
        pytest.param("電" * 70, 1, id="ucs2-70"),
        pytest.param("電" * 71, 2, id="ucs2-71"),
        pytest.param("電" * 134, 2, id="ucs2-134"),
        pytest.param("電" * 135, 3, id="ucs2-135"),
        # GSM-7 extension table characters take an escape and count double
        pytest.param("{" * 80, 1, id="extended-80"),
        pytest.param("{" * 81, 2, id="extended-81"),
        pytest.param("€" * 81, 2, id="euro-81"),
        # one character outside GSM-7 turns the whole text to UCS-2
        pytest.param("a" * 70, 1, id="ascii-70"),
        pytest.param("a" * 70 + "電", 2, id="ascii-70-plus-one-chinese"),
        # an emoji forces UCS-2 and takes two units
        pytest.param(EMOJI, 1, id="one-emoji"),
        pytest.param("a" * 68 + EMOJI, 1, id="emoji-makes-70-units"),
        pytest.param("a" * 69 + EMOJI, 2, id="emoji-makes-71-units"),
    ],
)
def test_sms_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments
