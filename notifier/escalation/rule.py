"""The escalation rule of DESIGN.md, as pure functions of an account's ledger and a date.

For an account, take its oldest unpaid bill B. The *second billing date* is
the due date of the next ``regular`` bill of a later period than B's (a
supplementary bill for the same period, 追補, or a final bill is not "the next
bill"); when that bill is not known, B's due date plus the account's billing
cycle. Once the business date reaches it (plus
any grace days), with B unpaid and the overdue total at least the minimum,
the account goes to a person. Each unpaid bill has such a date; a bill whose
date has come is *escalable*.

Given the policy, a due date that falls on a day off counts as the next
business day (``due_date_rolls_forward``): a bill due on a Sunday is not
overdue on the Monday, and a next bill due on a holiday sets the second
billing date on the day after. The bills keep their stored due dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from dateutil.relativedelta import relativedelta

from notifier.escalation.models import CaseKind
from notifier.policy.rules import EscalationPolicy

__all__ = ["LedgerBill", "Reachability", "escalable", "kind_for", "overdue", "second_billing_date"]


@dataclass(frozen=True)
class LedgerBill:
    bill_no: str
    due_date: date
    amount: int
    """What is still owed on it (partial payments taken off)."""
    paid: bool
    period: str = ""
    kind: str = "regular"


@dataclass(frozen=True)
class Reachability:
    """What of an account decides between a call and a visit."""

    phone: str | None
    vulnerable: bool
    prefers_paper: bool
    protected: bool = False
    """The account has a protection (life support, low income, disabled, elderly)."""
    area: str | None = None


def _in_order(bills: Sequence[LedgerBill]) -> list[LedgerBill]:
    return sorted(bills, key=lambda b: (b.due_date, b.bill_no))


def _next_bill(candidate: LedgerBill, bill: LedgerBill) -> bool:
    """Whether ``candidate`` can be the bill after ``bill``: regular, of a later period."""
    if candidate.kind != "regular":
        return False
    # Without periods (a caller that knows only dates) the due dates alone decide.
    return not (candidate.period and bill.period) or candidate.period > bill.period


def second_billing_date(
    bills: Sequence[LedgerBill],
    bill: LedgerBill,
    cycle_months: int,
    policy: EscalationPolicy | None = None,
) -> date:
    """The due date of the next regular bill of a later period, else ``bill``'s due date plus
    one cycle; rolled to a business day when ``policy`` says so."""
    later = [b.due_date for b in bills if b.due_date > bill.due_date and _next_bill(b, bill)]
    following: date = min(later) if later else _months_on(bill.due_date, cycle_months)
    return policy.due_for_rule(following) if policy is not None else following


@lru_cache(maxsize=4096)
def _months_on(day: date, months: int) -> date:
    # relativedelta keeps month ends: 31 Jan + 1 month is 28/29 Feb, not 3 Mar. Cached: a
    # sweep asks it for the same few due dates a hundred thousand times.
    following: date = day + relativedelta(months=months)
    return following


def overdue(
    bills: Sequence[LedgerBill], as_of: date, policy: EscalationPolicy | None = None
) -> list[LedgerBill]:
    """Unpaid bills whose due date (rolled to a business day by ``policy``) has passed by
    ``as_of``, oldest first."""
    return [
        b
        for b in _in_order(bills)
        if not b.paid and (policy.due_for_rule(b.due_date) if policy else b.due_date) < as_of
    ]


def escalable(
    bills: Sequence[LedgerBill], as_of: date, policy: EscalationPolicy, cycle_months: int | None
) -> list[LedgerBill]:
    """Unpaid bills whose second billing date (plus grace) has come, if the arrears are enough.

    Empty when the oldest unpaid bill has not reached its date or the overdue
    total is under ``policy.min_arrears``.
    """
    cycle = cycle_months or policy.default_cycle_months
    grace = timedelta(days=policy.grace_days)
    due = [
        b
        for b in _in_order(bills)
        if not b.paid and second_billing_date(bills, b, cycle, policy) + grace <= as_of
    ]
    if not due or sum(b.amount for b in overdue(bills, as_of, policy)) < policy.min_arrears:
        return []
    return due


def kind_for(account: Reachability, policy: EscalationPolicy) -> str:
    """``visit`` for accounts flagged for one, with no phone to call or in a remote area
    (``remote_areas``: 到府服務); else ``call``."""
    flagged = any(getattr(account, flag) for flag in policy.visit_flags)
    remote = account.area is not None and account.area in policy.remote_areas
    return CaseKind.VISIT if flagged or remote or not account.phone else CaseKind.CALL
