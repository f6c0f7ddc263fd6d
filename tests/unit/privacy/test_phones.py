"""Phone numbers parsed once: the kept number is the one phonenumbers would give each time."""

from __future__ import annotations

import phonenumbers
import pytest

from notifier.privacy import phones

CASES = [
    ("+886912345678", "TW"),
    ("+886912345678", None),
    ("0912345678", "TW"),
    ("0912-345-678", "TW"),
    ("+14155550123", "TW"),
    ("+886 2 2345 6789", "TW"),
    # "+" before no country code: phonenumbers reads the rest as a national number of the
    # region given, so the region is not dropped for it.
    ("+0912345678", "TW"),
    ("+0912345678", None),
    ("0912345678", None),
    ("not a number", "TW"),
    ("", "TW"),
]


def _plain(text: str, region: str | None) -> phonenumbers.PhoneNumber | str:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return f"raises {exc.error_type}"


def _kept(text: str, region: str | None) -> phonenumbers.PhoneNumber | str:
    try:
        return phones.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return f"raises {exc.error_type}"


@pytest.mark.parametrize(("text", "region"), CASES)
def test_the_same_number_or_the_same_refusal_as_phonenumbers(text: str, region: str | None) -> None:
    assert _kept(text, region) == _plain(text, region)
    assert _kept(text, region) == _plain(text, region)  # and again, from the cache


def test_one_number_for_the_schema_and_for_those_reading_its_e164() -> None:
    assert phones.parse("+886912345678", "TW") is phones.parse("+886912345678", None)


def test_the_kept_number_cannot_be_changed_by_one_reader_for_the_next() -> None:
    number = phones.parse("+886912345678", None)
    with pytest.raises(TypeError):
        number.national_number = 1
    assert phones.parse("+886912345678", None).national_number == 912345678


def test_a_refused_number_is_refused_each_time() -> None:
    for _ in range(2):
        with pytest.raises(phonenumbers.NumberParseException):
            phones.parse("not a number", "TW")
