"""The producer contract: what ``POST /v1/events`` accepts (DESIGN.md, "Events")."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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

from notifier.privacy.masking import redact_echo
from notifier.privacy.text import Address, PersonName, storable

__all__ = [
    "EVENT_TYPES",
    "MAX_AMOUNT",
    "PROTECTIONS",
    "SPOKEN_LANGUAGES",
    "AccountIn",
    "BillIn",
    "EventIn",
    "FieldError",
    "PaymentIn",
    "Protection",
    "SpokenLanguage",
    "UsageIn",
    "error_message",
    "field_errors",
    "field_path",
    "parse_event",
]

EVENT_TYPES = (
    "bill.issued", "bill.unpaid", "bill.paid", "bill.payment_reversed", "usage.abnormal",
    "account.suspended", "account.reconnected",
)  # fmt: skip
EventType = Literal[
    "bill.issued",
    "bill.unpaid",
    "bill.paid",
    "bill.payment_reversed",
    "usage.abnormal",
    "account.suspended",
    "account.reconnected",
]
"""``account.suspended``/``account.reconnected``: the billing side confirms it stopped or
restored the supply after ``collection.suspension_due`` (the collections ladder)."""
BillKind = Literal["regular", "supplementary", "final"]
_PAYMENT_EVENTS = ("bill.paid", "bill.payment_reversed")
ChannelName = Literal["push", "sms", "email", "voice", "postcard"]
Protection = Literal["life_support", "low_income", "disabled", "elderly"]
PROTECTIONS: tuple[Protection, ...] = ("life_support", "low_income", "disabled", "elderly")
"""Why an account is protected: 維生器材 (life-support equipment at home), 低收入戶,
身心障礙, 高齡. Any protection means a visit, as ``vulnerable`` does (README, "Escalation")."""
SpokenLanguage = Literal["zh-TW", "nan", "hak", "en", "vi", "id"]
SPOKEN_LANGUAGES: tuple[SpokenLanguage, ...] = ("zh-TW", "nan", "hak", "en", "vi", "id")
"""What a person speaks with the customer: 華語, 台語 (``nan``), 客語 (``hak``), English,
Vietnamese, Indonesian; apart from ``language``, the language notices are written in."""
DEFAULT_REGION = "TW"
MAX_AMOUNT = 2**31 - 1
"""The largest bill amount (NT$) the database's 32-bit column holds."""


class _Strict(BaseModel):
    # Unknown fields are refused, not ignored: a misspelt field is a producer's bug.
    # NaN and infinities are not numbers a JSON column (or a reader) can take.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """No NUL and no lone surrogate in any string, or list of strings."""
        for item in value if isinstance(value, list) else [value]:
            storable(item)
        return value


class AccountIn(_Strict):
    """An upsert of what the producer knows; fields left out keep stored values."""

    account_no: str = Field(
        pattern=r"^[0-9]{11}$", description="11-digit electricity account number"
    )
    name: PersonName | None = Field(None, max_length=200)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    phone: str | None = Field(None, description="any format; Taiwan is the default region")
    email: EmailStr | None = None
    push_tokens: list[str] | None = Field(None, max_length=20)
    address: Address | None = Field(None, max_length=500)
    area: PersonName | None = Field(None, max_length=64)
    vulnerable: bool | None = None
    """The old flag, still taken: a visit, with no reason named (``protections`` names it)."""
    protections: list[Protection] | None = Field(None, max_length=len(PROTECTIONS))
    """The whole list the producer knows of; it replaces the producer's earlier one."""
    spoken_language: SpokenLanguage | None = None
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

    @field_validator("protections")
    @classmethod
    def _protections_once(cls, value: list[str] | None) -> list[str] | None:
        # Stored in the vocabulary's order, each once: lists compare equal whoever sent them.
        return None if value is None else [p for p in PROTECTIONS if p in value]

    def known_fields(self) -> dict[str, Any]:
        """The fields the producer actually sent (others keep stored values)."""
        return self.model_dump(exclude_unset=True, exclude={"account_no"}, mode="json")


class BillIn(_Strict):
    bill_no: str = Field(min_length=1, max_length=64)
    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    amount: int = Field(ge=0, le=MAX_AMOUNT, description="NT$, integer")
    due_date: date = Field(description="YYYY-MM-DD")
    kind: BillKind = Field(
        "regular",
        description="supplementary (追補) and final bills never set the second billing date",
    )

    @field_validator("due_date", mode="before")
    @classmethod
    def _due_date_iso(cls, value: Any) -> Any:
        return _iso_date(value)


class PaymentIn(_Strict):
    """One payment of a bill (``bill.paid``), or the one undone (``bill.payment_reversed``)."""

    amount: int = Field(gt=0, le=MAX_AMOUNT, description="NT$, integer")
    paid_at: AwareDatetime
    method: str | None = Field(None, min_length=1, max_length=32)


class UsageIn(_Strict):
    period_start: date
    period_end: date
    kwh: float = Field(ge=0)
    baseline_kwh: float = Field(gt=0)
    reason: str | None = Field(None, max_length=500)

    @field_validator("period_start", "period_end", mode="before")
    @classmethod
    def _period_iso(cls, value: Any) -> Any:
        return _iso_date(value)

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
    payment: PaymentIn | None = Field(None, validate_default=True)
    """Absent on ``bill.paid``: the bill is paid in full."""
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

    @field_validator("payment")
    @classmethod
    def _payment_for_payment_events(
        cls, payment: PaymentIn | None, info: ValidationInfo
    ) -> PaymentIn | None:
        kind = info.data.get("type")
        if payment is None and kind == "bill.payment_reversed":
            raise ValueError("bill.payment_reversed needs the payment it reverses")
        if payment is not None and isinstance(kind, str) and kind not in _PAYMENT_EVENTS:
            raise ValueError(f"{kind} takes no payment")
        return payment


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: Any) -> Any:
    # pydantic would take a number, or a string of digits, as a Unix timestamp
    # ("0" is 1970-01-01): only a date or text that starts YYYY-MM-DD gets through.
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DAY.match(value)):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


class FieldError(BaseModel):
    field: str
    message: str


def field_path(loc: Sequence[str | int]) -> str:
    """``("account", "push_tokens", 0)`` → ``account.push_tokens[0]``."""
    path = ""
    for part in loc:
        # A field name is the caller's text: a lone surrogate in it must not break the answer.
        name = str(part).encode("utf-8", "backslashreplace").decode()
        path += f"[{part}]" if isinstance(part, int) else (f".{name}" if path else name)
    return path or "(body)"


def field_errors(exc: ValidationError, *, strip: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Pydantic errors as ``account.phone: message`` pairs."""
    return [
        FieldError(
            field=field_path(
                error["loc"][len(strip) :] if error["loc"][: len(strip)] == strip else error["loc"]
            ),
            message=error_message(error),
        )
        for error in exc.errors(include_url=False)
    ]


def error_message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message, never echoing the value sent (a phone, an email, an address)."""
    return redact_echo(str(error["msg"]).removeprefix("Value error, "), error.get("input"))


def parse_event(raw: Any) -> EventIn:
    """Validate one raw event; raises ``ValidationError``."""
    return EventIn.model_validate(raw)
