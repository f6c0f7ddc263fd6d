"""Which channels a notice goes to: the policy applied to one account."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from notifier.accounts.models import Account
from notifier.accounts.service import callable_phone, mail_to, texts_to
from notifier.policy.rules import Policy

__all__ = [
    "UNREACHABLE_REASONS",
    "Planned",
    "next_fallback",
    "plan",
    "reachable",
    "recipients_for",
    "why_unreachable",
]

UNREACHABLE_REASONS = ("no_contact", "opted_out", "no_template")
"""Why a notice has no delivery: no contact point for any channel the policy allows (nor
an address for paper), every reachable one opted out, or no template for what is left."""


@dataclass(frozen=True, slots=True)
class Planned:
    channel: str
    recipients: tuple[str, ...]


def recipients_for(account: Account, channel: str) -> tuple[str, ...]:
    """Where ``channel`` reaches the account; empty if it cannot."""
    if channel == "push":
        return tuple(account.push_tokens)
    if channel == "sms":
        return (phone,) if (phone := texts_to(account)) else ()
    if channel == "voice":
        return (phone,) if (phone := callable_phone(account.phone, account.invalid_phone)) else ()
    if channel == "email":
        return (address,) if (address := mail_to(account)) else ()
    if channel == "postcard":
        return (account.address,) if account.address else ()
    raise ValueError(f"unknown channel {channel!r}")


def reachable(
    account: Account, channel: str, has_template: Callable[[str], bool]
) -> tuple[str, ...]:
    """The recipients if the account can be reached there and has not opted out."""
    if channel in account.opt_outs or not has_template(channel):
        return ()
    return recipients_for(account, channel)


def plan(
    policy: Policy,
    account: Account,
    event_type: str,
    level: int,
    has_template: Callable[[str], bool],
    *,
    urgent: bool = False,
) -> list[Planned]:
    """The deliveries one notice gets, in the policy's order (an urgent one adds its own)."""
    wanted = policy.channels_for(event_type, level)
    if not wanted:
        return []
    if urgent:
        wanted += [c for c in policy.usage.urgent_channels if c not in wanted]
    if account.prefers_voice and event_type == "bill.unpaid" and "voice" not in wanted:
        wanted.append("voice")
    planned = [
        Planned(channel, to)
        for channel in wanted
        if channel != policy.paper_channel and (to := reachable(account, channel, has_template))
    ]
    if not planned or account.prefers_paper or policy.paper_channel in wanted:
        # Paper is the last resort, and some customers simply prefer it; an
        # opt-out of every digital channel still leaves the postcard.
        paper = (
            recipients_for(account, policy.paper_channel)
            if has_template(policy.paper_channel)
            else ()
        )
        if paper and policy.paper_channel not in account.opt_outs:
            planned.append(Planned(policy.paper_channel, paper))
    return planned


def why_unreachable(
    policy: Policy,
    account: Account,
    event_type: str,
    level: int,
    has_template: Callable[[str], bool],
    *,
    urgent: bool = False,
) -> str | None:
    """Why :func:`plan` finds no delivery for this notice (``UNREACHABLE_REASONS``); None
    when it finds one (the contact data may have been fixed since)."""
    if plan(policy, account, event_type, level, has_template, urgent=urgent):
        return None
    extra = policy.usage.urgent_channels if urgent else []
    wanted = [*policy.channels_for(event_type, level), *extra, policy.paper_channel]
    contact = [channel for channel in wanted if recipients_for(account, channel)]
    if not contact:
        return "no_contact"
    if all(channel in account.opt_outs for channel in contact):
        return "opted_out"
    return "no_template"


def next_fallback(
    policy: Policy,
    account: Account,
    failed_channel: str,
    used_channels: set[str],
    has_template: Callable[[str], bool],
    *,
    refused: frozenset[str] = frozenset(),
) -> Planned | None:
    """The first channel of the fallback chain that this notice has not used and that
    reaches the account at an address the provider has not just refused."""
    for channel in policy.fallback_chain(failed_channel):
        if channel in used_channels:
            continue
        to = reachable(account, channel, has_template)
        # An invalid mobile number for SMS is no better for a voice call.
        if to and not set(to) <= refused:
            return Planned(channel, to)
    return None
