"""The routing policy (config/policy.yaml) as typed data, and its time rules."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, Field, field_validator

__all__ = ["Policy", "QuietHours", "RetryPolicy", "load_policy"]

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


class Policy(BaseModel):
    timezone: str = "Asia/Taipei"
    routes: dict[str, dict[str, list[ChannelName]]]
    paper_channel: ChannelName = "postcard"
    fallback: dict[ChannelName, ChannelName] = {}
    quiet_hours: QuietHours | None = None
    dedup_window_hours: float = Field(72, ge=0)
    retry: RetryPolicy = RetryPolicy()

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

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

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


def load_policy(path: Path, *, quiet_hours_override: str = "") -> Policy:
    """Read and check the policy file; ``quiet_hours_override`` wins if set."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"policy file not found: {path}") from exc
    policy = Policy.model_validate(raw)
    if quiet_hours_override:
        channels: list[ChannelName] = (
            policy.quiet_hours.channels if policy.quiet_hours else ["sms", "voice", "push"]
        )
        policy.quiet_hours = QuietHours.parse(quiet_hours_override, channels)
    return policy
