"""The producer contract: what ``POST /v1/events`` accepts (DESIGN.md, "Events")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

import phonenumbers
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "EVENT_TYPES",
    "AccountIn",
    "BillIn",
    "EventIn",
    "FieldError",
    "UsageIn",
    "field_errors",
    "field_path",
    "parse_event",
]

EVENT_TYPES = ("bill.issued", "bill.unpaid", "bill.paid", "usage.abnormal")
EventType = Literal["bill.issued", "bill.unpaid", "bill.paid", "usage.abnormal"]
ChannelName = Literal["push", "sms", "email", "voice", "postcard"]
DEFAULT_REGION = "TW"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AccountIn(_Strict):
    """An upsert of what the producer knows; fields left out keep stored values."""

    account_no: str = Field(
        pattern=r"^[0-9]{11}$", description="11-digit electricity account number"
    )
    name: str | None = Field(None, max_length=200)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    phone: str | None = Field(None, description="any format; Taiwan is the default region")
    email: EmailStr | None = None
    push_tokens: list[str] | None = Field(None, max_length=20)
    address: str | None = Field(None, max_length=500)
    area: str | None = Field(None, max_length=64)
    vulnerable: bool | None = None
    prefers_paper: bool | None = None
    prefers_voice: bool | None = None
    opt_outs: list[ChannelName] | None = None
    billing_cycle_months: int | None = Field(None, ge=1, le=12)

    @field_validator("phone")
    @classmethod
    def _phone_e164(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            number = phonenumbers.parse(value, DEFAULT_REGION)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"not a phone number: {exc}") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError("not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("push_tokens")
    @classmethod
    def _tokens_not_blank(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not token.strip() or len(token) > 4096 for token in value):
            raise ValueError("push tokens must be non-empty strings of at most 4096 characters")
        return value

    def known_fields(self) -> dict[str, Any]:
        """The fields the producer actually sent (others keep stored values)."""
        return self.model_dump(exclude_unset=True, exclude={"account_no"}, mode="json")


class BillIn(_Strict):
    bill_no: str = Field(min_length=1, max_length=64)
    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    amount: int = Field(ge=0, description="NT$, integer")
    due_date: date


class UsageIn(_Strict):
    period_start: date
    period_end: date
    kwh: float = Field(ge=0)
    baseline_kwh: float = Field(gt=0)
    reason: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _period_in_order(self) -> UsageIn:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class EventIn(_Strict):
    """One billing or metering event."""

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    type: EventType
    occurred_at: AwareDatetime
    account: AccountIn
    bill: BillIn | None = Field(None, validate_default=True)
    usage: UsageIn | None = Field(None, validate_default=True)
    level: int = Field(1, ge=1, le=9, description="dunning level of bill.unpaid")

    @field_validator("bill")
    @classmethod
    def _bill_for_bill_events(cls, bill: BillIn | None, info: ValidationInfo) -> BillIn | None:
        kind = info.data.get("type")
        if bill is None and isinstance(kind, str) and kind.startswith("bill."):
            raise ValueError(f"{kind} needs a bill")
        return bill

    @field_validator("usage")
    @classmethod
    def _usage_for_usage_events(cls, usage: UsageIn | None, info: ValidationInfo) -> UsageIn | None:
        if usage is None and info.data.get("type") == "usage.abnormal":
            raise ValueError("usage.abnormal needs usage")
        return usage


class FieldError(BaseModel):
    field: str
    message: str


def field_path(loc: Sequence[str | int]) -> str:
    """``("account", "push_tokens", 0)`` → ``account.push_tokens[0]``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(body)"


def field_errors(exc: ValidationError, *, strip: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Pydantic errors as ``account.phone: message`` pairs."""
    return [
        FieldError(
            field=field_path(
                error["loc"][len(strip) :] if error["loc"][: len(strip)] == strip else error["loc"]
            ),
            message=str(error["msg"]).removeprefix("Value error, "),
        )
        for error in exc.errors(include_url=False)
    ]


def parse_event(raw: Any) -> EventIn:
    """Validate one raw event; raises ``ValidationError``."""
    return EventIn.model_validate(raw)
