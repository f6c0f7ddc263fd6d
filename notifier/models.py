"""Every table, imported in one place so metadata (and Alembic) sees them all."""

from __future__ import annotations

from sqlmodel import SQLModel

from notifier.accounts.models import Account
from notifier.audit.models import AuditEntry
from notifier.auth.models import ApiKey
from notifier.billing.models import Bill, Payment
from notifier.deliveries.models import Delivery, DeliveryChange, Notification
from notifier.escalation.holds import Hold
from notifier.escalation.models import (
    Agent,
    CollectionStage,
    Escalation,
    EscalationAttempt,
    EscalationBill,
    EscalationChange,
    SweepRun,
)
from notifier.events.models import Event
from notifier.providers.circuits import ProviderCircuit
from notifier.providers.ratelimit import ProviderRate
from notifier.users.models import User, UserSession
from notifier.webhooks.models import ProducerCallback, ProducerEndpoint

__all__ = [
    "Account",
    "Agent",
    "ApiKey",
    "AuditEntry",
    "Bill",
    "CollectionStage",
    "Delivery",
    "DeliveryChange",
    "Escalation",
    "EscalationAttempt",
    "EscalationBill",
    "EscalationChange",
    "Event",
    "Hold",
    "Notification",
    "Payment",
    "ProducerCallback",
    "ProducerEndpoint",
    "ProviderCircuit",
    "ProviderRate",
    "SweepRun",
    "User",
    "UserSession",
    "metadata",
]

metadata = SQLModel.metadata
