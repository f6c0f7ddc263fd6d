"""Taiwan's business calendar against the official lists, and how the policy counts on it."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from notifier.policy.calendar import BusinessCalendar, load_calendar_file
from notifier.policy.rules import EscalationPolicy, load_policy

POLICY_FILE = Path(__file__).resolve().parents[3] / "config" / "policy.yaml"
SHIPPED = load_policy(POLICY_FILE).escalation


def days(year: int, *month_days: tuple[int, int]) -> set[date]:
    return {date(year, month, day) for month, day in month_days}


def weekday_holidays(year: int) -> set[date]:
    return {d for d in SHIPPED.business_calendar.holidays(year) if d.weekday() < 5}


def days_off(year: int) -> int:
    first, last = date(year, 1, 1), date(year, 12, 31)
    every = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return sum(not SHIPPED.is_business_day(d) for d in every)


def test_2026_is_the_dgpa_calendar() -> None:
    # 115年政府行政機關辦公日曆表 (DGPA, 2025-06-13): 120 days off, no make-up working day.
    assert weekday_holidays(2026) == days(
        2026,
        (1, 1),
        (2, 16), (2, 17), (2, 18), (2, 19), (2, 20),  # 除夕, 春節, 除夕前一日 (Sun) 補假 on 2/20
        (2, 27),  # 和平紀念日 (Sat) 補假
        (4, 3), (4, 6),  # 兒童節 (Sat), 清明節 (Sun) 補假
        (5, 1), (6, 19), (9, 25), (9, 28),
        (10, 9), (10, 26),  # 國慶日 (Sat), 臺灣光復暨金門古寧頭大捷紀念日 (Sun) 補假
        (12, 25),
    )  # fmt: skip
    assert SHIPPED.business_calendar.make_up_workdays(2026) == set()
    assert days_off(2026) == 120


def test_2025_has_its_make_up_saturday() -> None:
    # 114年 as revised on 2025-06-17: 1/27 given off for 2/8 (Sat) worked, three new holidays.
    assert weekday_holidays(2025) == days(
        2025,
        (1, 1), (1, 27), (1, 28), (1, 29), (1, 30), (1, 31), (2, 28), (4, 3), (4, 4),
        (5, 30), (9, 29), (10, 6), (10, 10), (10, 24), (12, 25),
    )  # fmt: skip
    assert SHIPPED.business_calendar.make_up_workdays(2025) == {date(2025, 2, 8)}
    assert SHIPPED.is_business_day(date(2025, 2, 8))  # a Saturday
    assert days_off(2025) == 118


def test_2027_follows_the_rules_of_the_act() -> None:
    # Worked out by hand from 紀念日及節日實施條例 §8 (Saturday: the day before off,
    # Sunday: the day after; 除夕 and 春節: the next working days), not yet checked
    # against DGPA's 116年 calendar (config/calendars/tw.yaml has no 2027 entry).
    assert weekday_holidays(2027) == days(
        2027,
        (1, 1),
        (2, 4), (2, 5), (2, 8), (2, 9), (2, 10),  # 小年夜, 除夕, 初三; 初一 (Sat) and 初二 (Sun)
        (3, 1),  # 和平紀念日 (Sun)
        (4, 5), (4, 6),  # 清明節; 兒童節 (Sun) on the next working day
        (4, 30),  # 勞動節 (Sat)
        (6, 9), (9, 15), (9, 28),
        (10, 11),  # 國慶日 (Sun)
        (10, 25),
        (12, 24),  # 行憲紀念日 (Sat)
        (12, 31),  # 2028's 開國紀念日 (Sat)
    )  # fmt: skip
    assert SHIPPED.business_calendar.make_up_workdays(2027) == set()


def test_business_days_are_counted_across_a_holiday_week() -> None:
    # Friday before the nine days of 春節 2026: the next business day is Monday 2/23.
    assert SHIPPED.add_business_days(date(2026, 2, 13), 1) == date(2026, 2, 23)
    # 2025: the make-up Saturday counts; a weekdays-only count would skip it.
    assert SHIPPED.add_business_days(date(2025, 2, 6), 3) == date(2025, 2, 10)
    weekdays_only = EscalationPolicy(calendar=None)
    assert weekdays_only.add_business_days(date(2025, 2, 6), 3) == date(2025, 2, 11)


def test_a_due_date_on_a_day_off_rolls_to_the_next_business_day() -> None:
    assert SHIPPED.due_for_rule(date(2026, 11, 22)) == date(2026, 11, 23)  # Sunday → Monday
    assert SHIPPED.due_for_rule(date(2026, 2, 14)) == date(2026, 2, 23)  # into 春節 → after it
    assert SHIPPED.due_for_rule(date(2025, 2, 8)) == date(2025, 2, 8)  # a make-up Saturday
    assert SHIPPED.due_for_rule(date(2026, 11, 20)) == date(2026, 11, 20)  # a Friday
    kept = SHIPPED.model_copy(update={"due_date_rolls_forward": False})
    assert kept.due_for_rule(date(2026, 11, 22)) == date(2026, 11, 22)


def test_local_closures_add_to_the_calendar_and_win_over_a_make_up_day() -> None:
    typhoon = date(2026, 10, 1)  # a Thursday
    policy = SHIPPED.model_copy(update={"holidays": [typhoon, date(2025, 2, 8)]})
    assert not policy.is_business_day(typhoon) and SHIPPED.is_business_day(typhoon)
    assert not policy.is_business_day(date(2025, 2, 8))
    assert policy.add_business_days(date(2026, 9, 30), 1) == date(2026, 10, 2)


def test_a_year_is_worked_out_once() -> None:
    calendar = SHIPPED.business_calendar
    assert calendar is SHIPPED.business_calendar
    assert calendar.holidays(2026) is calendar.holidays(2026)


def test_the_data_file_corrects_the_package(tmp_path: Path) -> None:
    path = tmp_path / "tw.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "country": "TW",
                "years": {
                    2026: {
                        "holidays": ["2026-03-02"],  # a one-off day off, a Monday
                        "make_up_workdays": ["2026-03-07"],  # a Saturday
                        "workdays": ["2026-12-25"],  # a holiday taken back
                    }
                },
            }
        )
    )
    calendar = BusinessCalendar("TW", corrections=load_calendar_file(path))
    assert not calendar.is_business_day(date(2026, 3, 2))
    assert calendar.is_business_day(date(2026, 3, 7))
    assert calendar.is_business_day(date(2026, 12, 25))
    assert not calendar.is_business_day(date(2026, 3, 8))  # the Sunday after stays off


@pytest.mark.parametrize(
    ("setting", "field", "words"),
    [
        ({"calendar": "XX"}, "calendar", "no country"),
        ({"calendar_file": "/nonexistent/tw.yaml"}, "calendar_file", "not found"),
        ({"holidays": ["2026-02-30"]}, "holidays", "date"),
        ({"due_date_rolls_forward": "sometimes"}, "due_date_rolls_forward", "bool"),
    ],
)
def test_a_bad_calendar_setting_is_refused_by_name(
    setting: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        EscalationPolicy.model_validate(setting)
    [error] = caught.value.errors()
    assert error["loc"] == (field,) or error["loc"][0] == field
    assert words in str(caught.value).lower()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ({"country": "TW", "years": {2026: {"make_up_workdays": ["2027-01-09"]}}}, "under 2026"),
        ({"country": "TW", "years": {2026: {"补班": []}}}, "extra"),
        ({"country": "JP", "years": {}}, "is for JP"),
    ],
)
def test_a_bad_calendar_file_is_refused(tmp_path: Path, content: object, words: str) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        EscalationPolicy.model_validate({"calendar_file": str(path)})
    assert "calendar_file" in str(caught.value) and words in str(caught.value)


def test_a_relative_calendar_file_is_read_beside_the_policy(tmp_path: Path) -> None:
    policy = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True))
    with pytest.raises(ValidationError, match="calendar file not found"):
        load_policy(tmp_path / "policy.yaml")
    (tmp_path / "calendars").mkdir()
    shipped = POLICY_FILE.parent / "calendars" / "tw.yaml"
    (tmp_path / "calendars" / "tw.yaml").write_text(shipped.read_text(encoding="utf-8"))
    loaded = load_policy(tmp_path / "policy.yaml").escalation
    assert loaded.calendar_file == tmp_path / "calendars" / "tw.yaml"
    assert loaded.is_business_day(date(2025, 2, 8))
