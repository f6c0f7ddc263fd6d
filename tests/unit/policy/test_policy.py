"""The routing policy as config/policy.yaml states it, and its quiet-hours arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from notifier.policy.rules import Policy, QuietHours, load_policy

POLICY_FILE = Path(__file__).parents[3] / "config" / "policy.yaml"
TAIPEI = ZoneInfo("Asia/Taipei")
QUIET_CHANNELS = ["sms", "voice", "push"]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(POLICY_FILE)


# --- channels per event and level -----------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "level", "channels"),
    [
        ("bill.unpaid", 1, ["push", "sms", "email"]),
        ("bill.unpaid", 2, ["push", "sms", "email", "voice"]),
        ("bill.unpaid", 3, ["push", "sms", "email", "voice"]),  # highest level below
        ("bill.unpaid", 9, ["push", "sms", "email", "voice"]),
        ("bill.unpaid", 0, []),  # below every listed level, and no "*"
        ("usage.abnormal", 1, ["push", "sms", "email"]),
        ("usage.abnormal", 5, ["push", "sms", "email"]),
        ("bill.paid", 1, []),
        ("bill.issued", 1, []),
        ("meter.tampered", 1, []),  # unknown type
    ],
)
def test_channels_for(policy: Policy, event_type: str, level: int, channels: list[str]) -> None:
    assert policy.channels_for(event_type, level) == channels


def test_channels_for_returns_a_copy(policy: Policy) -> None:
    policy.channels_for("bill.unpaid", 1).append("voice")
    assert policy.channels_for("bill.unpaid", 1) == ["push", "sms", "email"]


@pytest.mark.parametrize(
    ("failed", "chain"),
    [
        ("push", ["sms", "voice", "postcard"]),
        ("sms", ["voice", "postcard"]),
        ("voice", ["postcard"]),
        ("email", ["postcard"]),
        ("postcard", []),
    ],
)
def test_fallback_chain(policy: Policy, failed: str, chain: list[str]) -> None:
    assert policy.fallback_chain(failed) == chain


def test_fallback_chain_stops_at_a_cycle() -> None:
    cyclic = Policy(routes={}, fallback={"push": "sms", "sms": "email", "email": "sms"})
    assert cyclic.fallback_chain("push") == ["sms", "email"]


def test_the_file_sets_the_documented_defaults(policy: Policy) -> None:
    assert policy.timezone == "Asia/Taipei"
    assert policy.paper_channel == "postcard"
    assert policy.quiet_hours == QuietHours(start=time(21), end=time(8), channels=QUIET_CHANNELS)
    assert policy.dedup_window_hours == 72
    assert policy.retry.max_attempts == 5


# --- quiet hours ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def night() -> QuietHours:
    hours = QuietHours.parse("21:00-08:00", QUIET_CHANNELS)
    assert hours is not None
    return hours


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        (time(21, 0), True),
        (time(22, 0), True),
        (time(0, 0), True),
        (time(7, 59), True),
        (time(8, 0), False),
        (time(12, 0), False),
        (time(20, 59), False),
    ],
)
def test_overnight_quiet_hours_contain(night: QuietHours, local: time, quiet: bool) -> None:
    assert night.contains(local) is quiet


@pytest.mark.parametrize(
    ("local", "quiet"),
    [(time(12, 59), False), (time(13, 0), True), (time(13, 59), True), (time(14, 0), False)],
)
def test_same_day_quiet_hours_contain(local: time, quiet: bool) -> None:
    hours = QuietHours.parse("13:00-14:00", QUIET_CHANNELS)
    assert hours is not None
    assert hours.contains(local) is quiet


def test_parse_reads_start_end_and_channels(night: QuietHours) -> None:
    assert (night.start, night.end, night.channels) == (time(21), time(8), QUIET_CHANNELS)


@pytest.mark.parametrize("text", ["off", "OFF", " none ", "0"])
def test_parse_off_is_none(text: str) -> None:
    assert QuietHours.parse(text, QUIET_CHANNELS) is None


@pytest.mark.parametrize("text", ["", "21:00", "21-08-09", "25:00-08:00", "nine to eight"])
def test_parse_refuses_a_bad_string_clearly(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected HH:MM-HH:MM or 'off'") as caught:
        QuietHours.parse(text, QUIET_CHANNELS)
    assert repr(text) in str(caught.value)


def test_window_opens_next_morning_when_it_is_late_evening(night: QuietHours) -> None:
    at_2330_taipei = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)

    opens = night.window_opens(at_2330_taipei, TAIPEI)

    assert opens == datetime(2026, 11, 28, 8, 0, tzinfo=TAIPEI)
    assert opens is not None and opens.utcoffset() == TAIPEI.utcoffset(opens)


def test_window_opens_the_same_morning_after_midnight(night: QuietHours) -> None:
    at_0700_taipei = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    assert night.window_opens(at_0700_taipei, TAIPEI) == datetime(2026, 11, 27, 8, tzinfo=TAIPEI)


def test_window_is_open_at_noon(night: QuietHours) -> None:
    at_noon_taipei = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
    assert night.window_opens(at_noon_taipei, TAIPEI) is None


# --- loading --------------------------------------------------------------------------------


def test_override_off_disables_quiet_hours() -> None:
    assert load_policy(POLICY_FILE, quiet_hours_override="off").quiet_hours is None


def test_override_replaces_the_hours_and_keeps_the_channels() -> None:
    loaded = load_policy(POLICY_FILE, quiet_hours_override="22:00-07:00")
    assert loaded.quiet_hours == QuietHours(start=time(22), end=time(7), channels=QUIET_CHANNELS)


def test_an_empty_override_keeps_the_file(policy: Policy) -> None:
    assert load_policy(POLICY_FILE, quiet_hours_override="").quiet_hours == policy.quiet_hours


def test_a_bad_override_is_refused() -> None:
    with pytest.raises(ValueError, match="quiet hours"):
        load_policy(POLICY_FILE, quiet_hours_override="late")


def test_a_level_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('routes:\n  bill.unpaid:\n    "one": [push, sms]\n', encoding="utf-8")

    with pytest.raises(ValidationError, match=r"routes\.bill\.unpaid: level 'one' is not a number"):
        load_policy(path)


def test_an_unknown_channel_in_a_route_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('routes:\n  bill.unpaid:\n    "1": [fax]\n', encoding="utf-8")

    with pytest.raises(ValidationError, match="fax"):
        load_policy(path)


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "policy.yaml"

    with pytest.raises(FileNotFoundError, match="policy file not found") as caught:
        load_policy(missing)
    assert str(missing) in str(caught.value)


def test_the_daily_sweep_is_scheduled_from_the_policy(tmp_path: Path) -> None:
    from notifier.queues.celery_config import make_celery
    from notifier.settings import Settings

    policy = yaml.safe_load(POLICY_FILE.read_text())
    policy["escalation"].update(
        sweep_at="06:45",
        sweep_days=["mon", "wed"],
        calendar_file=str(POLICY_FILE.parent / policy["escalation"]["calendar_file"]),
    )
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))

    app = make_celery(Settings(policy_file=path, data_dir=tmp_path))

    schedule = app.conf.beat_schedule["escalation-sweep"]["schedule"]
    # Every day of the week: the task asks the business calendar (a make-up Saturday works).
    assert (schedule.hour, schedule.minute, schedule.day_of_week) == ({6}, {45}, set(range(7)))
