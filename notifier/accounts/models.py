"""The customer's account: who they are and how they can be reached."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["Account"]


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    account_no: str = Field(primary_key=True, max_length=11)
    producer_key_id: int | None = None
    """The producer that first sent the account's contact data (``events.models.NO_KEY`` for
    the bus): only its events change it. None until one does (an account named by
    ``account_no`` alone, or older than the rule)."""
    name: str | None = Field(default=None, max_length=200)
    language: str = Field(default="zh-TW", max_length=16)
    phone: str | None = Field(default=None, max_length=20)
    """E.164."""
    invalid_phone: str | None = Field(default=None, max_length=20)
    """The number an agent found wrong; while ``phone`` is still it, nobody calls it.
    Kept as the number, not a flag, so a new number from the producer is good again."""
    phone_invalid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    phone_invalid_reason: str | None = Field(default=None, max_length=64)
    """Who found it wrong: ``wrong_number`` (an agent), ``twilio 30003`` (unreachable), ..."""
    sms_unable_phone: str | None = Field(default=None, max_length=20)
    """The number a carrier said takes no SMS (a landline, Twilio 30006): calls still go to
    it, SMS do not, while ``phone`` is still it."""
    email: str | None = Field(default=None, max_length=320)
    invalid_email: str | None = Field(default=None, max_length=320)
    """The address a hard bounce said takes no mail; while ``email`` is still it, no email
    goes to it. Kept as the address, so a new one from the producer is good again."""
    email_invalid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    email_invalid_reason: str | None = Field(default=None, max_length=64)
    """What said so: ``bounce 5.1.1`` (a delivery status notification's status)."""
    phone_hash: str | None = Field(default=None, max_length=64, index=True)
    email_hash: str | None = Field(default=None, max_length=64, index=True)
    """Keyed hashes of ``phone`` and ``email`` (``privacy.lookup``): the delivery log's
    search by phone or email uses these, so no plain personal data is indexed."""
    push_tokens: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    address: str | None = Field(default=None, max_length=500)
    area: str | None = Field(default=None, max_length=64, index=True)
    vulnerable: bool = False
    """The old unnamed flag (a visit); ``protections`` say why an account is protected."""
    protections: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    """Any of ``events.schema.PROTECTIONS``: the producer's list joined with what supervisors
    added."""
    protections_added: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    """The protections supervisors added: kept when the producer sends its list again."""
    spoken_language: str | None = Field(default=None, max_length=16)
    """What to speak with the customer (``nan``, ``hak``, ...); may differ from ``language``."""
    prefers_paper: bool = False
    prefers_voice: bool = False
    opt_outs: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    billing_cycle_months: int | None = None
    """Months between bills; None: the policy's default (escalation.default_cycle_months)."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
