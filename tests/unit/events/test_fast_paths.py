"""The producer contract's shortcuts give what the long way gives, over generated input.

A plain email address is checked by a regex, a plain Taiwanese mobile number read
by one: each must take, normalise and refuse exactly as pydantic's EmailStr and
phonenumbers do (the same value, or the same errors). A batch's items are parsed,
and refused, as each alone.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict, EmailStr, TypeAdapter, ValidationError

from notifier.events import schema
from notifier.events.schema import (
    YEARS_AROUND,
    AccountIn,
    Email,
    EventIn,
    parse_event,
    parse_events,
)

prop = settings(max_examples=400, derandomize=True, deadline=None)
CONFIG = ConfigDict(str_strip_whitespace=True)  # as the models read a string
SLOW_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr, config=CONFIG)
FAST_EMAIL: TypeAdapter[str] = TypeAdapter(Email, config=CONFIG)


def _outcome(adapter: TypeAdapter[str], value: Any) -> Any:
    try:
        return ("ok", adapter.validate_python(value))
    except ValidationError as exc:
        return ("refused", exc.errors(include_url=False))


LOCAL_CHARS = "abzABZ09_+-.!#~'\"é "
DOMAIN_CHARS = "abzABZ09-.é_"
labels = st.text(DOMAIN_CHARS, min_size=0, max_size=70)
local_parts = st.one_of(
    st.text(LOCAL_CHARS, min_size=0, max_size=70),
    st.sampled_from(["Postmaster", "info", "ABUSE", "a.b", "a..b", ".a", "a.", "-a-", "+"]),
)
domains = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.builds(
        lambda name, tld: f"{name}.{tld}",
        st.text("abZ09-", min_size=1, max_size=66),
        st.one_of(
            st.text("abcXYZ0", min_size=1, max_size=6),
            st.sampled_from(
                [
                    "com",
                    "tw",
                    "com.tw",
                    "test",
                    "local",
                    "localhost",
                    "onion",
                    "arpa",
                    "invalid",
                    "in-addr.arpa",
                    "xn--kpry57d",
                    "xn--zz",
                    "ab--cd",
                    "COM",
                    "example",
                ]
            ),
        ),
    ),
)
addresses = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains),
    st.emails(),
    st.text(max_size=40),
)


@prop
@given(addresses)
@example("a@example.com")
@example("Alice.Chen+bills@Mail.Example.COM")
@example(" a@example.com ")
@example("postmaster@example.com")
@example("a@b.test")
@example("a@mail.local")
@example("a@xn--kpry57d.tw")
@example("a@ab--cd.tw")
@example("a@b.c1")
@example("a@123.com")
@example("a@-b.com")
@example("a" * 65 + "@example.com")
@example("a@" + "b" * 64 + ".com")
@example("a@" + ".".join(["b" * 63] * 4) + ".com")
@example("王小明 <a@example.com>")
@example("a@example.com\n")
def test_an_email_address_is_taken_normalised_and_refused_as_emailstr_does(value: str) -> None:
    assert _outcome(FAST_EMAIL, value) == _outcome(SLOW_EMAIL, value)


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("c01234567890@example.com", "c01234567890@example.com"),
        ("Alice.Chen+bills@Mail.Example.COM", "Alice.Chen+bills@mail.example.com"),
        ("a_b-c@x-y.com.tw", "a_b-c@x-y.com.tw"),
    ],
)
def test_a_plain_address_takes_the_short_way(value: str, normalised: str) -> None:
    assert schema._plain_email(value) == normalised
    assert SLOW_EMAIL.validate_python(value) == normalised


def _phone_the_long_way(value: str) -> str:
    """What AccountIn did with a phone before the shortcut (phonenumbers alone)."""
    try:
        number = phonenumbers.parse(value, schema.DEFAULT_REGION)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_outcomes(value: str) -> tuple[Any, Any]:
    try:
        fast: Any = (
            "ok",
            AccountIn.model_validate({"account_no": "01234567890", "phone": value}).phone,
        )
    except ValidationError as exc:
        [error] = exc.errors(include_url=False)
        fast = ("refused", error["msg"].removeprefix("Value error, "))
    stripped = value.strip()
    if stripped == "":
        return fast, ("ok", None)
    try:
        slow: Any = ("ok", _phone_the_long_way(stripped))
    except ValueError as exc:
        slow = ("refused", str(exc))
    return fast, slow


phones = st.one_of(
    st.builds(
        lambda prefix, digits: prefix + digits,
        st.sampled_from(["+886", "0", "", "886", "+8860", "00", "+886 ", "+86", "0886", "+1"]),
        st.text("0123456789", min_size=7, max_size=11),
    ),
    st.builds(
        lambda second, rest: f"09{second}{rest}",
        st.sampled_from("0123456789"),
        st.text("0123456789", min_size=5, max_size=9),
    ),
    st.text("0123456789+-() ", max_size=16),
)


@prop
@given(phones)
@example("0912345678")
@example("+886912345678")
@example("0990000000")
@example("+886990000000")
@example("0400010123")
@example("09123456789")
@example("091234567")
@example("０９１２３４５６７８")
@example("+886 912 345 678")
def test_a_phone_number_gets_the_e164_or_the_refusal_phonenumbers_gives(value: str) -> None:
    fast, slow = _phone_outcomes(value)
    assert fast == slow


def test_every_mobile_prefix_takes_the_short_way_to_the_same_e164() -> None:
    for second in "012345678":
        for rest in ("0000000", "1234567", "9999999"):
            national = f"9{second}{rest}"
            for written in (f"0{national}", f"+886{national}"):
                assert schema._TW_MOBILE.fullmatch(written)
                assert _phone_outcomes(written) == (("ok", f"+886{national}"),) * 2


EXAMPLE: dict[str, Any] = {
    "event_id": "billing-20261127-000123",
    "type": "bill.unpaid",
    "occurred_at": "2026-11-27T09:00:00+08:00",
    "account": {
        "account_no": "01234567890", "name": "王小明", "language": "zh-TW",
        "phone": "+886912345678", "email": "a@example.com", "push_tokens": ["tok-1"],
        "address": "苗栗縣頭份市中正路1號", "area": "toufen",
    },
    "bill": {"bill_no": "B202609-01234567890", "period": "2026-09", "amount": 1830,
             "due_date": "2026-11-20"},
    "level": 1,
}  # fmt: skip
PLACES = [
    ("event_id",), ("type",), ("occurred_at",), ("level",), ("extra",),
    ("account", "account_no"), ("account", "name"), ("account", "phone"),
    ("account", "email"), ("account", "push_tokens"), ("account", "address"),
    ("account", "area"), ("account", "vulnerable"), ("account", "opt_outs"),
    ("bill",), ("bill", "bill_no"), ("bill", "amount"), ("bill", "due_date"), ("bill", "kind"),
    ("usage",), ("payment",), ("account",),
]  # fmt: skip
values = st.one_of(
    st.text(alphabet=st.sampled_from("a1 \x00\ud800\udfff\u202e\u200b\n王-")),
    st.lists(st.text(alphabet=st.sampled_from("a\x00\ud800 ")), max_size=3),
    st.integers(), st.booleans(), st.none(), st.floats(),
    st.just({"k": "\x00"}), st.just(["ok", "\x00"]),
)  # fmt: skip


def _changed(changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    raw = copy.deepcopy(EXAMPLE)
    for (*parents, leaf), value in changes:
        target = raw
        for name in parents:
            target = target[name] if isinstance(target.get(name), dict) else {}
        target[leaf] = value
    return raw


def _errors(exc: ValidationError) -> Any:
    """What a refusal says; the exception a validator raised compared by its words."""
    return [
        {**error, "ctx": {key: str(value) for key, value in error.get("ctx", {}).items()}}
        for error in exc.errors(include_url=False)
    ]


def _event_outcome(parse: Any, raw: Any) -> Any:
    try:
        event = parse(raw)
    except ValidationError as exc:
        return ("refused", str(exc), _errors(exc))
    return _accepted(event)


def _accepted(event: EventIn) -> Any:
    return ("ok", event.model_dump(), event.model_fields_set, event.account.model_fields_set)


events_ = st.lists(st.tuples(st.sampled_from(PLACES), values), max_size=3).map(_changed)


@prop
@given(st.lists(events_, max_size=5))
@example([EXAMPLE, EXAMPLE])
@example([EXAMPLE, {**EXAMPLE, "level": 0}, {**EXAMPLE, "event_id": "e\x00"}])
def test_a_batch_is_parsed_as_its_events_one_by_one(raws: list[dict[str, Any]]) -> None:
    together = parse_events(raws)
    assert len(together) == len(raws)
    for raw, parsed in zip(raws, together, strict=True):
        alone = _event_outcome(parse_event, raw)
        if isinstance(parsed, ValidationError):
            assert alone == ("refused", str(parsed), _errors(parsed))
        else:
            assert alone == _accepted(parsed)


def test_the_date_window_moves_at_utc_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    span = timedelta(days=round(365.25 * YEARS_AROUND))
    midnight = datetime(2027, 3, 1, tzinfo=UTC).timestamp()
    for moment, today in [
        (midnight - 1, date(2027, 2, 28)),
        (midnight, date(2027, 3, 1)),
        (midnight + 86_399, date(2027, 3, 1)),
        (midnight - 1, date(2027, 2, 28)),  # a clock set back is read again
        (midnight + 86_400, date(2027, 3, 2)),
    ]:
        monkeypatch.setattr(schema.time, "time", lambda moment=moment: moment)
        assert schema._dates_allowed() == (today - span, today + span)
