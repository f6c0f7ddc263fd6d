"""How long a push may wait for its device, what it replaces there, how urgently it wakes it.

FCM keeps a message for an offline device for 4 weeks unless told otherwise,
and shows every message it delivers: a due-date reminder could arrive after
the due date, and level 1 and level 2 of one bill would stack. So each push
carries (``channels.Message``; the FCM channel turns them into ``android.ttl``,
``apns-expiration``, ``collapse_key``/``apns-collapse-id`` and priorities):

* an expiry: the end of the bill's due date (as the escalation rule counts
  it, rolled forward to a business day) while that is ahead; a short while
  for a notice about a bill already overdue (its words are about today); a
  few hours for a usage alert; never later than ``push_ttl_hours`` from now;
* a collapse key per account and bill (or usage period), not per level or
  delivery: every notice about one bill replaces the one before it;
* high priority for dunning (``bill.unpaid``, ``collection.*``) and urgent
  alerts, normal for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

from notifier.deliveries.models import Notification
from notifier.runtime import Runtime

__all__ = ["PushTerms", "push_terms"]

OVERDUE_TTL = timedelta(hours=12)
"""A notice about an overdue bill states today's balance and deadline: stale by tomorrow."""
USAGE_TTL = timedelta(hours=4)
"""A usage alert asks the customer to look at the meter now; hours later it only alarms."""


@dataclass(frozen=True, slots=True)
class PushTerms:
    expires_at: datetime
    collapse_key: str
    priority: Literal["high", "normal"]


def is_dunning(event_type: str) -> bool:
    """Whether a notice asks for money (or warns of the supply being cut)."""
    return event_type == "bill.unpaid" or event_type.startswith("collection.")


def push_terms(
    rt: Runtime, notification: Notification, due_date: date | None, *, now: datetime
) -> PushTerms:
    """The expiry, collapse key and priority of a push for ``notification`` sent at ``now``."""
    cap = now + timedelta(hours=rt.settings.push_ttl_hours)
    if notification.type.startswith("usage."):
        expires = now + USAGE_TTL
    elif due_date is not None:
        due = rt.policy.escalation.due_for_rule(due_date)
        end_of_due = datetime.combine(due + timedelta(days=1), time(0), tzinfo=rt.policy.tz)
        expires = end_of_due if end_of_due > now else now + OVERDUE_TTL
    else:
        expires = cap
    about = notification.bill_no or notification.usage_period or notification.type
    urgent = is_dunning(notification.type) or notification.urgent
    return PushTerms(
        expires_at=min(expires, cap),
        collapse_key=f"{notification.account_no}:{about}",
        priority="high" if urgent else "normal",
    )
