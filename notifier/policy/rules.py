"""The routing policy (config/policy.yaml) as typed data, and its time rules."""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from holidays import list_supported_countries
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from notifier.policy.calendar import WEEKDAYS, BusinessCalendar, load_calendar_file
from notifier.policy.local_time import local_date

__all__ = [
    "CorrectionPolicy",
    "EscalationPolicy",
    "Policy",
    "QuietHours",
    "RetryPolicy",
    "UsagePolicy",
    "VoicePolicy",
    "load_policy",
    "parse_policy",
    "read_policy_file",
]

ChannelName = Literal["push", "sms", "email", "voice", "postcard"]


class QuietHours(BaseModel):
    start: time
    end: time
    channels: list[ChannelName] = ["sms", "voice", "push"]

    @classmethod
    def parse(cls, text: str, channels: list[ChannelName]) -> QuietHours | None:
        """``"21:00-08:00"`` → hours; ``"off"`` → None."""
        if text.strip().lower() in {"off", "none", "0"}:
            return None
        try:
            start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
        except ValueError as exc:
            raise ValueError(f"quiet hours {text!r}: expected HH:MM-HH:MM or 'off'") from exc
        return cls(start=start, end=end, channels=channels)

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def window_opens(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """When sending may resume, or None if ``now`` is outside quiet hours."""
        local = now.astimezone(tz)
        if not self.contains(local.timetz().replace(tzinfo=None)):
            return None
        opens = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if opens <= local:
            opens += timedelta(days=1)
        return opens


class RetryPolicy(BaseModel):
    max_attempts: int = Field(5, ge=1)
    base_seconds: float = Field(5, gt=0)
    max_seconds: float = Field(900, gt=0)


VisitFlag = Literal["vulnerable", "prefers_paper", "protected"]
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class EscalationPolicy(BaseModel):
    """DESIGN.md "Escalation rule": when an unpaid bill goes to a person, and which person."""

    model_config = ConfigDict(extra="forbid")

    min_arrears: int = Field(1, ge=0)
    """NT$: smaller overdue totals are not escalated."""
    grace_days: int = Field(0, ge=0, le=365)
    """Days after the second billing date before a case opens."""
    default_cycle_months: int = Field(2, ge=1, le=12)
    """For accounts whose billing cycle the producer never sent."""
    max_call_attempts: int = Field(3, ge=1, le=20)
    """Call attempts ending ``no_answer`` or ``wrong_number`` before the case becomes a visit."""
    visit_flags: list[VisitFlag] = ["vulnerable", "prefers_paper", "protected"]
    """Account flags that send a case straight to a visit (so does having no phone);
    ``protected`` is an account with any of ``protections``."""
    remote_areas: list[str] = []
    """Service areas whose cases are all visits (到府服務): too far for a call to settle it."""
    sweep_at: time = time(7, 0)
    sweep_days: list[str] = ["mon", "tue", "wed", "thu", "fri"]
    """Weekdays that are business days, unless a holiday (a missed day is caught up the next)."""
    calendar: str | None = "TW"
    """The country whose official holidays are days off (``holidays`` package code); None:
    weekdays only."""
    calendar_file: Path | None = None
    """What the package lacks (make-up working days, 補班), per year: ``config/calendars/``.
    A relative path is read from the policy file's folder."""
    holidays: list[date] = []
    """Local closures on top of the calendar (a typhoon day, 颱風假): not business days."""
    due_date_rolls_forward: bool = True
    """A due date on a day that is not a business day counts, for the rule, as the next one
    (a bill due on a Sunday is not overdue on Monday). The bill's stored due date is kept."""
    payment_grace_days: int = Field(3, ge=0, le=30)
    """A payment made this many days before the trigger date, heard of after the case opened,
    closes it as ``paid_before_trigger`` (the bank took its time), not as collected."""
    claimed_payment_days: int = Field(3, ge=1, le=30)
    """Business days a customer's word that they paid waits for the ledger to show it."""
    max_promise_days: int = Field(14, ge=1, le=365)
    """Business days ahead an agent may accept a promise to pay for."""
    max_promise_days_supervisor: int = Field(60, ge=1, le=365)
    """Business days ahead a supervisor may accept a promise to pay for."""
    max_notice_days: int = Field(7, ge=0, le=60)
    """Days ahead a printed visit notice may be dated."""
    call_retry_hours: float = Field(4, ge=0, le=168)
    """Hours before another unanswered call of a case counts against it."""
    nobody_home_visits: int = Field(2, ge=1, le=20)
    """Visits ending ``nobody_home`` after which the case goes to the final demand."""
    visit_notice_days: int = Field(7, ge=0, le=60)
    """Business days a visit notice handed over (``notice_delivered``) gives to pay before the
    final demand."""
    final_demand_days: int = Field(10, ge=1, le=60)
    """Business days from the final demand (限期催繳) to its deadline; past it unpaid, the
    supply may be suspended."""
    _timezone: str = PrivateAttr("Asia/Taipei")

    @field_validator("sweep_days")
    @classmethod
    def _weekdays(cls, days: list[str]) -> list[str]:
        days = [day.strip().lower()[:3] for day in days]
        unknown = [day for day in days if day not in WEEKDAYS]
        if unknown or not days:
            raise ValueError(f"sweep_days: {unknown or 'none'}; use {', '.join(WEEKDAYS)}")
        return days

    @field_validator("calendar")
    @classmethod
    def _known_country(cls, country: str | None) -> str | None:
        if country is None or country.strip().lower() in {"", "none", "off"}:
            return None
        country = country.strip().upper()
        if country not in _supported_countries():
            raise ValueError(f"calendar: {country!r} is no country the holidays package knows")
        return country

    @field_validator("calendar_file")
    @classmethod
    def _readable_calendar(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                load_calendar_file(path)
            except FileNotFoundError as exc:  # pydantic names the field of a ValueError only
                raise ValueError(str(exc)) from exc
        return path

    @model_validator(mode="after")
    def _calendar_of_its_country(self) -> EscalationPolicy:
        if self.calendar_file is not None:
            country = load_calendar_file(self.calendar_file).country.upper()
            if country != self.calendar:
                raise ValueError(
                    f"calendar_file: {self.calendar_file} is for {country}, "
                    f"the calendar is {self.calendar}"
                )
        return self

    @property
    def business_calendar(self) -> BusinessCalendar:
        """The calendar business days are counted on (built once per distinct setting)."""
        return _calendar_for(
            self.calendar, self.calendar_file, tuple(self.sweep_days), tuple(self.holidays)
        )

    def is_business_day(self, day: date) -> bool:
        """A weekday in ``sweep_days`` that is no holiday, or a make-up working day (補班)."""
        return self.business_calendar.is_business_day(day)

    def add_business_days(self, day: date, count: int) -> date:
        """The ``count``-th business day after ``day`` (``day`` itself for 0).

        The one place business days are counted, on ``business_calendar``.
        """
        calendar = self.business_calendar
        while count > 0:
            day += timedelta(days=1)
            count -= calendar.is_business_day(day)
        return day

    def due_for_rule(self, due_date: date) -> date:
        """The date a bill due on ``due_date`` falls due for the rule (``due_date_rolls_forward``:
        the next business day when it is not one)."""
        if not self.due_date_rolls_forward:
            return due_date
        calendar = self.business_calendar
        while not calendar.is_business_day(due_date):
            due_date += timedelta(days=1)
        return due_date

    @property
    def tz(self) -> ZoneInfo:
        """The zone business dates are in (the policy's ``timezone``)."""
        return ZoneInfo(self._timezone)

    def business_date(self, now: datetime) -> date:
        """The calendar date at ``now`` where the utility works."""
        return now.astimezone(self.tz).date()


class CorrectionPolicy(BaseModel):
    """What happens when a bill's amount or due date is corrected after notices named it."""

    model_config = ConfigDict(extra="forbid")

    notify: bool = True
    """Send a short correction notice (``bill.corrected``) on each channel where a notice
    with the old terms already went out. Notices not sent yet are rendered again anyway."""


class UsagePolicy(BaseModel):
    """When an abnormal-usage alert is urgent: a suspected leak, which cannot wait for morning."""

    model_config = ConfigDict(extra="forbid")

    urgent_ratio: float = Field(3.0, gt=1)
    """kWh at least this many times the baseline is urgent, whatever the reason says."""
    urgent_words: list[str] = ["leak", "漏電", "漏水"]
    """A reason containing one of these (any case) names a suspected leak: urgent."""
    urgent_channels: list[ChannelName] = ["voice"]
    """An urgent alert also goes on these, and quiet hours do not hold it there."""

    def is_urgent(self, *, kwh: float, baseline_kwh: float, reason: str | None) -> bool:
        """Whether an alert with these figures is a suspected leak."""
        if baseline_kwh > 0 and kwh >= self.urgent_ratio * baseline_kwh:
            return True
        text = (reason or "").casefold()
        return any(word.casefold() in text for word in self.urgent_words)


class VoicePolicy(BaseModel):
    """When a call counts as heard, and what an answering machine is told instead of the notice."""

    model_config = ConfigDict(extra="forbid")

    min_served_seconds: int = Field(20, ge=0)
    """A call a person hung up sooner than this did not hear the notice: not served."""
    voicemail: dict[str, str] = {
        "zh-TW": "您好，這是{utility}的電費通知，請回電客服專線 {service_phone}。謝謝。",
        "en": "Hello, this is {utility} with a notice about your bill. "
        "Please call our service line {service_phone}. Thank you.",
    }
    """Per notice language: what a voicemail hears (``{service_phone}``, digits spelled out;
    ``{utility}``, the identity's name in that language).
    No name, amount or account: anyone at the home may play the tape."""


class Policy(BaseModel):
    timezone: str = "Asia/Taipei"
    routes: dict[str, dict[str, list[ChannelName]]]
    paper_channel: ChannelName = "postcard"
    fallback: dict[ChannelName, ChannelName] = {}
    quiet_hours: QuietHours | None = None
    dedup_window_hours: float = Field(72, ge=0)
    retry: RetryPolicy = RetryPolicy()
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    corrections: CorrectionPolicy = CorrectionPolicy()
    usage: UsagePolicy = UsagePolicy()
    voice: VoicePolicy = VoicePolicy()

    @field_validator("routes")
    @classmethod
    def _levels_are_numbers(
        cls, routes: dict[str, dict[str, list[ChannelName]]]
    ) -> dict[str, dict[str, list[ChannelName]]]:
        for event_type, levels in routes.items():
            for level in levels:
                if level != "*" and not level.isdigit():
                    raise ValueError(f"routes.{event_type}: level {level!r} is not a number or '*'")
        return routes

    @model_validator(mode="after")
    def _escalation_zone(self) -> Policy:
        # The sweep and outcomes are handed only the escalation part; its dates
        # (a payment's day against the trigger date) are in this zone too.
        self.escalation._timezone = self.timezone
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def business_date(self, now: datetime) -> date:
        """The calendar date at ``now`` where the utility works."""
        return local_date(now, self.tz)

    def holds_in_quiet_hours(self, channel: str, *, urgent: bool) -> bool:
        """Whether quiet hours defer a delivery on ``channel`` (an urgent alert's call rings)."""
        if self.quiet_hours is None or channel not in self.quiet_hours.channels:
            return False
        return not (urgent and channel in self.usage.urgent_channels)

    def channels_for(self, event_type: str, level: int) -> list[str]:
        """The channels the policy lists for this event at this level."""
        levels = self.routes.get(event_type, {})
        numbered = sorted((int(k), v) for k, v in levels.items() if k != "*")
        chosen: list[ChannelName] | None = None
        for number, channels in numbered:
            if number <= level:
                chosen = channels
        if chosen is None:
            chosen = levels.get("*", [])
        return list(chosen)

    def fallback_chain(self, channel: str) -> list[str]:
        """Channels to try, in order, after ``channel`` failed for good."""
        following: dict[str, str] = {str(k): str(v) for k, v in self.fallback.items()}
        chain: list[str] = []
        current = channel
        while (nxt := following.get(current)) and nxt not in chain and nxt != channel:
            chain.append(nxt)
            current = nxt
        return chain


@functools.cache
def _supported_countries() -> frozenset[str]:
    return frozenset(list_supported_countries())


@functools.lru_cache(maxsize=32)
def _calendar_for(
    country: str | None, file: Path | None, weekdays: tuple[str, ...], closures: tuple[date, ...]
) -> BusinessCalendar:
    corrections = load_calendar_file(file) if file is not None else None
    return BusinessCalendar(country, weekdays=weekdays, corrections=corrections, closures=closures)


def read_policy_file(path: Path) -> dict[str, Any]:
    """The policy file as data, not yet checked."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"policy file not found: {path}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"policy file {path}: expected a mapping at the top")
    return raw


def parse_policy(raw: dict[str, Any], *, folder: Path) -> Policy:
    """Check a policy document; its relative ``escalation.calendar_file`` is read from ``folder``.

    Raises pydantic's ``ValidationError``, whose locations name each bad field.
    """
    escalation = raw.get("escalation")
    if isinstance(escalation, dict) and isinstance(escalation.get("calendar_file"), str):
        escalation = {**escalation, "calendar_file": folder / escalation["calendar_file"]}
        raw = {**raw, "escalation": escalation}
    return Policy.model_validate(raw)


def load_policy(path: Path, *, quiet_hours_override: str = "") -> Policy:
    """Read and check the policy file; ``quiet_hours_override`` wins if set."""
    policy = parse_policy(read_policy_file(path), folder=path.parent)
    if quiet_hours_override:
        channels: list[ChannelName] = (
            policy.quiet_hours.channels if policy.quiet_hours else ["sms", "voice", "push"]
        )
        policy.quiet_hours = QuietHours.parse(quiet_hours_override, channels)
    return policy
