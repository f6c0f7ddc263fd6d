"""Properties of the producer contract, over generated input (hypothesis).

Phone numbers: every way people write a Taiwanese mobile number normalises
to the same E.164; anything else is a validation error, never a crash.
Amounts: whole NT$ from 0 to the column's limit. Dates: ISO dates round
trip; numbers are not dates; zh-TW Minguo dates read back to the same day.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from notifier.events.schema import MAX_AMOUNT, YEARS_AROUND, AccountIn, BillIn
from notifier.notices.rendering import format_date, format_period

# The same examples on every run (CI must not find a new failure by chance), a few hundred each.
prop = settings(max_examples=200, derandomize=True, deadline=None)

ACCOUNT_NO = "01234567890"

# A mobile number's 9 national digits: 9, then 0-8, then 7 more (phonenumbers' TW metadata).
mobiles = st.builds(
    lambda second, rest: f"9{second}{rest}",
    st.sampled_from("012345678"),
    st.text("0123456789", min_size=7, max_size=7),
)
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _ways_to_write(national: str) -> list[str]:
    """``912345678`` as people and systems write it."""
    a, b, c = national[:3], national[3:6], national[6:]
    local = f"0{national}"
    return [
        local,
        f"0{a}-{b}-{c}",
        f"0{a} {b} {c}",
        f"(0{a}) {b}-{c}",
        f"0{a}.{b}.{c}",
        f"+886{national}",
        f"+886 {a} {b} {c}",
        f"+886-{a}-{b}-{c}",
        f"+886 (0){a} {b} {c}",
        f"002 886 {national}",  # dialled from Taiwan (002: the international prefix)
        f" {local} ",
        local.translate(FULL_WIDTH),
    ]


def _phone(value: Any) -> str | None:
    return AccountIn.model_validate({"account_no": ACCOUNT_NO, "phone": value}).phone


@prop
@given(mobiles, st.data())
def test_any_way_of_writing_a_mobile_number_gives_its_e164(national: str, data: Any) -> None:
    written = data.draw(st.sampled_from(_ways_to_write(national)))
    assert _phone(written) == f"+886{national}"


@prop
@given(st.one_of(st.text(), st.text("0123456789+-() ", max_size=30)))
@example("")
@example("0")
@example("+" + "9" * 300)
@example("09\x0012345678")
@example("0912\ud800345678")
def test_anything_else_is_a_validation_error_or_a_valid_number(value: str) -> None:
    try:
        phone = _phone(value)
    except ValidationError as exc:
        assert [e["loc"] for e in exc.errors()] == [("phone",)]
        return
    assert phone is None or re.fullmatch(r"\+[1-9]\d{6,14}", phone), phone


def _bill(**fields: Any) -> BillIn:
    bill = {"bill_no": "B1", "period": "2026-09", "amount": 1830, "due_date": "2026-11-20"}
    return BillIn.model_validate({**bill, **fields})


@prop
@given(st.integers())
@example(0)
@example(MAX_AMOUNT)
@example(MAX_AMOUNT + 1)
@example(-1)
def test_an_amount_is_a_whole_number_of_nt_dollars_within_the_column(amount: int) -> None:
    if 0 <= amount <= MAX_AMOUNT:
        assert _bill(amount=amount).amount == amount
    else:
        with pytest.raises(ValidationError, match="amount"):
            _bill(amount=amount)


@prop
@given(st.floats().filter(lambda x: not x.is_integer()))  # NaN and infinities too
def test_a_fraction_of_a_dollar_is_refused(amount: float) -> None:
    with pytest.raises(ValidationError, match="amount"):
        _bill(amount=amount)


NEAR = timedelta(days=round(365.25 * YEARS_AROUND))


@prop
@given(
    st.dates(
        min_value=date.today() - NEAR + timedelta(days=1),
        max_value=date.today() + NEAR - timedelta(days=1),
    )
)
def test_an_iso_due_date_reads_back_as_the_same_day(day: date) -> None:
    assert _bill(due_date=day.isoformat()).due_date == day


@prop
@given(st.dates().filter(lambda day: abs(day - date.today()) > NEAR + timedelta(days=1)))
@example(date(1970, 1, 1))
@example(date(9999, 12, 31))
def test_a_due_date_far_from_today_is_refused(day: date) -> None:
    with pytest.raises(ValidationError, match="within 5 years"):
        _bill(due_date=day.isoformat())


@prop
@given(st.one_of(st.integers(), st.floats(), st.booleans()))
@example(0)
@example(1_764_000_000)
def test_a_number_is_not_a_due_date(value: Any) -> None:
    with pytest.raises(ValidationError, match="due_date"):
        _bill(due_date=value)


@prop
@given(st.text(max_size=40))
@example("0")  # pydantic reads a string of digits as a Unix timestamp: 1970-01-01
@example("1767225600")
def test_a_due_date_that_is_not_iso_is_a_validation_error(value: str) -> None:
    try:
        parsed = _bill(due_date=value).due_date
    except ValidationError:
        return
    assert parsed.isoformat() == value.strip()[:10]


_MINGUO = re.compile(r"(\d+)年(\d+)月(\d+)日")


@prop
@given(st.dates(min_value=date(1912, 1, 1)))
def test_a_minguo_date_reads_back_as_the_same_day(day: date) -> None:
    # Minguo year 1 is 1912; earlier years are written in the Western calendar.
    written = format_date(day, "zh-TW")
    match = _MINGUO.fullmatch(written)
    assert match is not None, written
    year, month, dom = (int(part) for part in match.groups())
    assert date(year + 1911, month, dom) == day
    assert format_date(day, "zh-TW", minguo=False) == f"{day.year}年{day.month}月{day.day}日"


@prop
@given(st.dates(min_value=date(1912, 1, 1)))
def test_a_minguo_billing_period_reads_back_as_the_same_month(day: date) -> None:
    written = format_period(f"{day.year:04d}-{day.month:02d}", "zh-TW")
    match = re.fullmatch(r"(\d+)年(\d+)月", written)
    assert match is not None, written
    assert (int(match[1]) + 1911, int(match[2])) == (day.year, day.month)
