"""422 messages never echo a phone number, email or address a producer sent."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from notifier.events.schema import field_errors, parse_event
from notifier.privacy.masking import redact_echo
from tests.support import events


@pytest.mark.parametrize(
    ("fields", "sent"),
    [
        ({"phone": "+886 912 345 678 999"}, "+886 912 345 678 999"),
        ({"phone": "0912-345-6789-0"}, "0912-345-6789-0"),
        ({"email": "wang.xiaoming@@example.com"}, "wang.xiaoming@@example.com"),
        ({"email": "wang.xiaoming@[300.1.1.1]"}, "300.1.1.1"),
        ({"email": "wang xiaoming@example.com"}, "xiaoming@example.com"),
    ],
)
def test_a_bad_phone_or_email_is_named_but_not_quoted(fields: dict[str, str], sent: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_event(events.unpaid(events.account(**fields)))
    errors = field_errors(caught.value)
    assert [e.field for e in errors] == [f"account.{next(iter(fields))}"]
    assert all(sent not in e.message for e in errors)


class _Quoting(BaseModel):
    address: str

    @field_validator("address")
    @classmethod
    def _refuse(cls, value: str) -> str:
        raise ValueError(f"{value} is not an address we deliver to (call 0912345678)")


def test_a_validator_quoting_the_value_is_redacted() -> None:
    with pytest.raises(ValidationError) as caught:
        _Quoting(address="苗栗縣頭份市中正路1號")
    (error,) = field_errors(caught.value)
    assert error.message == "*** is not an address we deliver to (call ***)"


@pytest.mark.parametrize(
    ("message", "sent", "shown"),
    [
        (
            "The domain name example.com does not exist.",
            "alice@example.com",
            "The domain name *** does not exist.",
        ),
        ("wrote to alice@example.com", None, "wrote to a***@example.com"),
        ("dialled +886912345678 and (02) 2345 6789", None, "dialled *** and ***"),
        (
            "Input should be less than or equal to 2147483647",
            9999999999,
            "Input should be less than or equal to 2147483647",
        ),
        (
            "String should have at most 500 characters",
            "x" * 600,
            "String should have at most 500 characters",
        ),
    ],
)
def test_redact_echo(message: str, sent: object, shown: str) -> None:
    assert redact_echo(message, sent) == shown
