"""The producer contract (DESIGN.md "Events"): what is accepted, and how a refusal names the field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from notifier.events.schema import EventIn, field_errors, field_path, parse_event

# The JSON example of DESIGN.md, "Events".
EXAMPLE: dict[str, Any] = {
    "event_id": "billing-20261127-000123",
    "type": "bill.unpaid",
    "occurred_at": "2026-11-27T09:00:00+08:00",
    "account": {
        "account_no": "01234567890",
        "name": "王小明",
        "language": "zh-TW",
        "phone": "+886912345678",
        "email": "a@example.com",
        "push_tokens": ["..."],
        "address": "苗栗縣頭份市...",
        "area": "toufen",
    },
    "bill": {
        "bill_no": "B202609-01234567890",
        "period": "2026-09",
        "amount": 1830,
        "due_date": "2026-11-20",
    },
    "level": 1,
}

USAGE = {
    "period_start": "2026-09-01",
    "period_end": "2026-10-31",
    "kwh": 950.0,
    "baseline_kwh": 420.0,
    "reason": "usage more than double the baseline",
}


def event(change: Callable[[dict[str, Any]], object] = lambda e: None) -> dict[str, Any]:
    """A deep copy of the example with ``change`` applied to it."""
    raw = copy.deepcopy(EXAMPLE)
    change(raw)
    return raw


def errors_of(raw: dict[str, Any]) -> dict[str, str]:
    """``{field: message}`` of a refused event; fails the test if it was accepted."""
    with pytest.raises(ValidationError) as caught:
        parse_event(raw)
    return {error.field: error.message for error in field_errors(caught.value)}


# --- accepted -------------------------------------------------------------------------------


def test_the_design_example_is_a_valid_bill_unpaid_event() -> None:
    parsed = parse_event(event())

    assert isinstance(parsed, EventIn)
    assert parsed.event_id == "billing-20261127-000123"
    assert parsed.type == "bill.unpaid"
    assert parsed.level == 1
    assert parsed.occurred_at == datetime(2026, 11, 27, 9, tzinfo=timezone(timedelta(hours=8)))
    assert parsed.account.account_no == "01234567890"
    assert parsed.account.phone == "+886912345678"
    assert parsed.account.email == "a@example.com"
    assert parsed.bill is not None
    assert parsed.bill.amount == 1830
    assert parsed.bill.period == "2026-09"
    assert parsed.bill.due_date == date(2026, 11, 20)
    assert parsed.usage is None


def test_level_defaults_to_1() -> None:
    assert parse_event(event(lambda e: e.pop("level"))).level == 1


def test_usage_abnormal_takes_usage_and_no_bill() -> None:
    def to_usage(e: dict[str, Any]) -> None:
        e.update(type="usage.abnormal", usage=USAGE)
        e.pop("bill")

    parsed = parse_event(event(to_usage))

    assert parsed.bill is None
    assert parsed.usage is not None
    assert parsed.usage.period_end == date(2026, 10, 31)
    assert parsed.usage.kwh == 950.0


@pytest.mark.parametrize(
    "written",
    ["0912345678", "+886 912 345 678", "+886912345678", "0912-345-678"],
)
def test_phone_is_normalised_to_e164(written: str) -> None:
    parsed = parse_event(event(lambda e: e["account"].update(phone=written)))
    assert parsed.account.phone == "+886912345678"


def test_an_empty_phone_means_none() -> None:
    assert parse_event(event(lambda e: e["account"].update(phone=""))).account.phone is None


# --- refused, naming the field --------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """``_set("account.phone", "x")`` sets one nested field of the event."""
    *parents, leaf = path.split(".")

    def change(e: dict[str, Any]) -> None:
        target = e
        for key in parents:
            target = target[key]
        target[leaf] = value

    return change


def _type_without(kind: str, drop: str) -> Callable[[dict[str, Any]], None]:
    def change(e: dict[str, Any]) -> None:
        e["type"] = kind
        e.pop(drop)

    return change


def _usage_backwards(e: dict[str, Any]) -> None:
    e["type"] = "usage.abnormal"
    e.pop("bill")
    e["usage"] = {**USAGE, "period_start": "2026-10-31", "period_end": "2026-09-01"}


BAD_INPUT = [
    pytest.param(_set("account.phone", "12345"), "account.phone", "phone", id="phone-too-short"),
    pytest.param(_set("account.phone", "abc"), "account.phone", "phone", id="phone-not-a-number"),
    pytest.param(_set("account.email", "a.example.com"), "account.email", "email", id="email"),
    pytest.param(
        _set("occurred_at", "2026-11-27T09:00:00"), "occurred_at", "timezone", id="naive-time"
    ),
    pytest.param(_set("bill.due_date", "2026-13-40"), "bill.due_date", "date", id="due-date"),
    pytest.param(_set("bill.amount", -1), "bill.amount", "greater than", id="negative-amount"),
    pytest.param(_set("type", "bill.overdue"), "type", "bill.unpaid", id="unknown-type"),
    pytest.param(
        _type_without("bill.unpaid", "bill"), "bill", "needs a bill", id="unpaid-without-bill"
    ),
    pytest.param(
        _type_without("bill.paid", "bill"), "bill", "needs a bill", id="paid-without-bill"
    ),
    pytest.param(
        _type_without("bill.issued", "bill"), "bill", "needs a bill", id="issued-without-bill"
    ),
    pytest.param(_set("bill", None), "bill", "needs a bill", id="bill-null"),
    pytest.param(
        _type_without("usage.abnormal", "bill"), "usage", "needs usage", id="usage-missing"
    ),
    pytest.param(
        _set("account.account_no", "0123456789"), "account.account_no", "pattern", id="acct-10"
    ),
    pytest.param(
        _set("account.account_no", "012345678901"), "account.account_no", "pattern", id="acct-12"
    ),
    pytest.param(
        _set("account.account_no", "0123456789X"), "account.account_no", "pattern", id="acct-X"
    ),
    pytest.param(_set("colour", "red"), "colour", "Extra inputs", id="extra-top-level"),
    pytest.param(_set("account.colour", "red"), "account.colour", "Extra", id="extra-in-account"),
    pytest.param(_set("bill.period", "2026-9"), "bill.period", "pattern", id="period-2026-9"),
    pytest.param(_set("bill.period", "2026-13"), "bill.period", "pattern", id="period-month-13"),
    pytest.param(_usage_backwards, "usage", "period_end is before", id="usage-backwards"),
    pytest.param(
        _set("account.opt_outs", ["sms", "fax"]), "account.opt_outs[1]", "postcard", id="opt-out"
    ),
    pytest.param(_set("level", 0), "level", "greater than", id="level-0"),
    pytest.param(_set("event_id", "has space"), "event_id", "pattern", id="event-id-space"),
]


@pytest.mark.parametrize(("change", "field", "says"), BAD_INPUT)
def test_bad_input_is_refused_naming_the_field(
    change: Callable[[dict[str, Any]], None], field: str, says: str
) -> None:
    errors = errors_of(event(change))

    assert list(errors) == [field], errors
    assert says in errors[field]


def test_every_bad_field_is_reported_at_once() -> None:
    def many(e: dict[str, Any]) -> None:
        e["account"]["phone"] = "12345"
        e["account"]["email"] = "nope"
        e["bill"]["due_date"] = "2026-13-40"

    assert set(errors_of(event(many))) == {"account.phone", "account.email", "bill.due_date"}


def test_messages_drop_pydantics_value_error_prefix() -> None:
    errors = errors_of(event(_type_without("bill.unpaid", "bill")))
    assert errors == {"bill": "bill.unpaid needs a bill"}


@pytest.mark.parametrize(
    "account_no",
    [
        pytest.param("０１２３４５６７８９０", id="full-width"),
        pytest.param("٠١٢٣٤٥٦٧٨٩٠", id="arabic-indic"),
    ],
)
def test_account_no_must_be_ascii_digits(account_no: str) -> None:
    errors = errors_of(event(_set("account.account_no", account_no)))
    assert list(errors) == ["account.account_no"]


def test_bill_period_must_be_ascii_digits() -> None:
    errors = errors_of(event(_set("bill.period", "２０２６-09")))
    assert list(errors) == ["bill.period"]


# --- field paths and known fields -----------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "(body)"),
        (("type",), "type"),
        (("account", "phone"), "account.phone"),
        (("account", "push_tokens", 0), "account.push_tokens[0]"),
        (("events", 3, "bill", "amount"), "events[3].bill.amount"),
    ],
)
def test_field_path(loc: tuple[str | int, ...], path: str) -> None:
    assert field_path(loc) == path


def test_field_errors_can_strip_a_prefix() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_event(event(_set("account.phone", "12345")))

    [error] = field_errors(caught.value, strip=("account",))
    assert error.field == "phone"


def test_known_fields_are_only_those_sent() -> None:
    sent = {"account_no": "01234567890", "phone": "0912345678", "prefers_paper": True}
    parsed = parse_event(event(_set("account", sent)))

    assert parsed.account.known_fields() == {"phone": "+886912345678", "prefers_paper": True}


def test_known_fields_keep_an_explicit_clear() -> None:
    sent = {"account_no": "01234567890", "email": None, "opt_outs": []}
    parsed = parse_event(event(_set("account", sent)))

    assert parsed.account.known_fields() == {"email": None, "opt_outs": []}


def test_known_fields_of_a_bare_account_is_empty() -> None:
    parsed = parse_event(event(_set("account", {"account_no": "01234567890"})))
    assert parsed.account.known_fields() == {}
