"""The producer contract: what ``POST /v1/events`` accepts (DESIGN.md, "Events")."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from typing import Annotated, Any, Literal, TypeVar

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DNS_LABEL_LENGTH_LIMIT,
    EMAIL_MAX_LENGTH,
    LOCAL_PART_MAX_LENGTH,
)
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.networks import validate_email

from notifier.privacy import phones
from notifier.privacy.masking import redact_echo
from notifier.privacy.text import Address, FreeText, PersonName, storable

__all__ = [
    "EVENT_TYPES",
    "MAX_AMOUNT",
    "MAX_ERRORS",
    "MAX_KWH",
    "PROTECTIONS",
    "SPOKEN_LANGUAGES",
    "YEARS_AROUND",
    "AccountIn",
    "BillIn",
    "Email",
    "EventIn",
    "FieldError",
    "PaymentIn",
    "Protection",
    "SpokenLanguage",
    "UsageIn",
    "capped",
    "error_message",
    "field_errors",
    "field_path",
    "parse_event",
    "parse_events",
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
身心障礙, 高齡. Any protection means a visit, as ``vulnerable`` does (docs/agents.md, "Escalation")."""
SpokenLanguage = Literal["zh-TW", "nan", "hak", "en", "vi", "id"]
SPOKEN_LANGUAGES: tuple[SpokenLanguage, ...] = ("zh-TW", "nan", "hak", "en", "vi", "id")
"""What a person speaks with the customer: 華語, 台語 (``nan``), 客語 (``hak``), English,
Vietnamese, Indonesian; apart from ``language``, the language notices are written in."""
DEFAULT_REGION = "TW"
MAX_AMOUNT = 2**31 - 1
"""The largest bill amount (NT$) the database's 32-bit column holds."""
MAX_KWH = 100_000_000
"""The largest reading taken (kWh): far above any meter's month, and a number every
notice can print (``1e308`` is finite, and no template can write it)."""
MAX_ERRORS = 50
"""Errors reported per event and per request; past it, one line says how many more."""
YEARS_AROUND = 5
"""Dates (due dates, usage periods, payments, events) within this many years of today."""
_TOKEN = r"^[A-Za-z0-9_:.\-]+$"
"""A push token's alphabet (FCM's and APNs's): no spaces, no control or bidi characters."""


def _no_number(value: Any) -> Any:
    # pydantic reads a number (or a bool) as a Unix time: a producer's bug, not a date.
    if isinstance(value, bool | int | float):
        raise ValueError("expected an ISO 8601 date-time with its offset, not a number")
    return value


_D = TypeVar("_D", date, datetime)


_window: tuple[float, float, date, date] = (0.0, 0.0, date.max, date.min)
"""The UTC day (from, until, in POSIX seconds) the dates below were worked out for, and the
first and last dates allowed in it."""


def _dates_allowed() -> tuple[date, date]:
    """The first and last dates within :data:`YEARS_AROUND` years of today (UTC)."""
    global _window
    start, until, first, last = _window
    now = time.time()
    if start <= now < until:
        return first, last
    today = datetime.fromtimestamp(now, UTC).date()
    span = timedelta(days=round(365.25 * YEARS_AROUND))
    midnight = datetime.combine(today, time_of_day.min, UTC).timestamp()
    first, last = today - span, today + span
    # Worked out once a UTC day rather than for each of an event's two to four dates.
    _window = (midnight, midnight + 86_400, first, last)
    return first, last


def _near_today(value: _D) -> _D:
    day = value.date() if isinstance(value, datetime) else value
    first, last = _dates_allowed()
    if not first <= day <= last:
        raise ValueError(f"must be within {YEARS_AROUND} years of today")
    return value


_PLAIN_EMAIL = re.compile(
    r"([A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]+)"
)
"""An address email-validator takes as it is but for the domain's case: a dot-atom of
letters, digits and ``_+-`` before the @, dot-separated letters, digits and hyphens after
it, ending in letters."""


def _plain_email(value: str) -> str | None:
    """The address as email-validator normalises it, if it is plainly valid; else None."""
    match = _PLAIN_EMAIL.fullmatch(value)
    if match is None or len(value) > EMAIL_MAX_LENGTH:
        return None
    local, domain = match[1], match[2].lower()
    if (
        len(local) > LOCAL_PART_MAX_LENGTH
        or local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES  # lowercased by the library
        or "--" in domain  # R-LDH labels and Punycode: the library's rules
        or any(len(label) > DNS_LABEL_LENGTH_LIMIT for label in domain.split("."))
        or any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES)
    ):
        return None
    return f"{local}@{domain}"


def _email(value: str) -> str:
    # email-validator spends tens of microseconds an address (Unicode tables, IDNA): the
    # plain ASCII addresses nearly all producers send are checked by a regex instead, with
    # the same result.
    return _plain_email(value) or validate_email(value)[1]


Email = Annotated[
    str, AfterValidator(_email), WithJsonSchema({"type": "string", "format": "email"})
]
"""pydantic's ``EmailStr``: the same addresses taken, normalised and refused alike."""

_TW_MOBILE = re.compile(r"(?:\+886|0)(9[0-8][0-9]{7})")
"""A Taiwanese mobile number written plainly: +886 or 0, then phonenumbers' TW mobile range
9[0-8] and seven digits (its other one, 40001x, and every other way of writing are left to
phonenumbers)."""


EventTime = Annotated[AwareDatetime, BeforeValidator(_no_number)]


class _Strict(BaseModel):
    # Unknown fields are refused, not ignored: a misspelt field is a producer's bug.
    # NaN and infinities are not numbers a JSON column (or a reader) can take.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _few_unknown(cls, data: Any) -> Any:
        """Stop at once on a body of many unknown fields: one error for all, not one each."""
        if isinstance(data, dict) and len(data) > MAX_ERRORS:
            unknown = [key for key in data if key not in cls.model_fields]
            if len(unknown) > MAX_ERRORS:
                first = ", ".join(repr(str(key)[:40]) for key in unknown[:3])
                raise ValueError(f"{len(unknown)} unknown fields (first: {first})")
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """No NUL and no lone surrogate in any string, or list of strings."""
        # Called for every field of every event: anything but a string passes storable,
        # so only strings are handed to it.
        if isinstance(value, str):
            storable(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str):
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
    email: Email | None = None
    push_tokens: list[Annotated[str, Field(max_length=4096, pattern=_TOKEN)]] | None = Field(
        None, max_length=20
    )
    address: Address | None = Field(None, max_length=500)
    area: PersonName | None = Field(None, max_length=64)
    vulnerable: StrictBool | None = None
    """The old flag, still taken: a visit, with no reason named (``protections`` names it)."""
    protections: list[Protection] | None = Field(None, max_length=len(PROTECTIONS))
    """The whole list the producer knows of; it replaces the producer's earlier one."""
    spoken_language: SpokenLanguage | None = None
    prefers_paper: StrictBool | None = None
    prefers_voice: StrictBool | None = None
    opt_outs: list[ChannelName] | None = None
    billing_cycle_months: StrictInt | None = Field(None, ge=1, le=12)

    @field_validator("phone")
    @classmethod
    def _phone_e164(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # phonenumbers spends tens of microseconds a number: the usual +8869XXXXXXXX or
        # 09XXXXXXXX is read by a regex instead, to the E.164 phonenumbers gives it.
        if mobile := _TW_MOBILE.fullmatch(value):
            return f"+886{mobile[1]}"
        try:
            number = phones.parse(value, DEFAULT_REGION)
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
    bill_no: FreeText = Field(min_length=1, max_length=64)
    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    amount: StrictInt = Field(ge=0, le=MAX_AMOUNT, description="NT$, integer")
    due_date: date = Field(description="YYYY-MM-DD")
    kind: BillKind = Field(
        "regular",
        description="supplementary (追補) and final bills never set the second billing date",
    )

    @field_validator("due_date", mode="before")
    @classmethod
    def _due_date_iso(cls, value: Any) -> Any:
        return _iso_date(value)

    @field_validator("due_date")
    @classmethod
    def _due_date_near(cls, value: date) -> date:
        return _near_today(value)


class PaymentIn(_Strict):
    """One payment of a bill (``bill.paid``), or the one undone (``bill.payment_reversed``)."""

    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT, description="NT$, integer")
    paid_at: EventTime
    method: FreeText | None = Field(None, min_length=1, max_length=32)

    @field_validator("paid_at")
    @classmethod
    def _paid_near(cls, value: datetime) -> datetime:
        return _near_today(value)


class UsageIn(_Strict):
    period_start: date
    period_end: date
    kwh: StrictFloat = Field(ge=0, le=MAX_KWH)
    baseline_kwh: StrictFloat = Field(gt=0, le=MAX_KWH)
    reason: FreeText | None = Field(None, max_length=500)

    @field_validator("period_start", "period_end", mode="before")
    @classmethod
    def _period_iso(cls, value: Any) -> Any:
        return _iso_date(value)

    @field_validator("period_start", "period_end")
    @classmethod
    def _period_near(cls, value: date) -> date:
        return _near_today(value)

    @model_validator(mode="after")
    def _period_in_order(self) -> UsageIn:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class EventIn(_Strict):
    """One billing or metering event."""

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    type: EventType
    occurred_at: EventTime
    account: AccountIn
    bill: BillIn | None = Field(None, validate_default=True)
    usage: UsageIn | None = Field(None, validate_default=True)
    payment: PaymentIn | None = Field(None, validate_default=True)
    """Absent on ``bill.paid``: the bill is paid in full."""
    level: StrictInt = Field(1, ge=1, le=9, description="dunning level of bill.unpaid")

    @field_validator("occurred_at")
    @classmethod
    def _occurred_near(cls, value: datetime) -> datetime:
        return _near_today(value)

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
        # A field name is the caller's text: a lone surrogate in it must not break the
        # answer, and a name a megabyte long is not repeated whole.
        name = str(part)[:100].encode("utf-8", "backslashreplace").decode()
        path += f"[{part}]" if isinstance(part, int) else (f".{name}" if path else name)
    return path or "(body)"


def capped(errors: Sequence[FieldError], *, field: str = "(body)") -> list[FieldError]:
    """At most :data:`MAX_ERRORS` errors: the first ones, then one saying how many more."""
    if len(errors) <= MAX_ERRORS:
        return list(errors)
    more = len(errors) - (MAX_ERRORS - 1)
    return [*errors[: MAX_ERRORS - 1], FieldError(field=field, message=f"{more} more errors")]


def field_errors(exc: ValidationError, *, strip: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Pydantic errors as ``account.phone: message`` pairs, at most :data:`MAX_ERRORS`."""
    return capped(
        [
            FieldError(
                field=field_path(
                    error["loc"][len(strip) :]
                    if error["loc"][: len(strip)] == strip
                    else error["loc"]
                ),
                message=error_message(error),
            )
            for error in exc.errors(include_url=False)
        ]
    )


def error_message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message, never echoing the value sent (a phone, an email, an address)."""
    return redact_echo(str(error["msg"]).removeprefix("Value error, "), error.get("input"))


def parse_event(raw: Any) -> EventIn:
    """Validate one raw event; raises ``ValidationError``."""
    return EventIn.model_validate(raw)


def parse_events(raws: Sequence[Any]) -> list[EventIn | ValidationError]:
    """Validate a batch: each item's event, or the ``ValidationError`` parse_event raises for it."""
    # One event at a time, not one TypeAdapter(list[EventIn]) call: that saved nothing
    # measurable on a valid batch of 500 and, where one item was bad, cost the whole batch
    # parsed twice (each again for its own errors, as they are reported).
    parsed: list[EventIn | ValidationError] = []
    for raw in raws:
        try:
            parsed.append(parse_event(raw))
        except ValidationError as exc:
            parsed.append(exc)
    return parsed
