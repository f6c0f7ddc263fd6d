"""Which provider sends each claimed delivery now: the channel's providers in order, by health.

A provider is *healthy* when its circuit is closed (providers/circuits.py)
and, for a provider that reports receipts, its receipts do not stall: fewer
than ``receipt_stall_count`` of its sends have waited longer than
``receipt_stall_seconds`` for their report (Twilio reports within seconds
to minutes; a quarter of an hour without one, many times over, is a provider
that accepts and then does not deliver, or does not say). The healthy
providers with a weight above 0 share a batch by weight; with none of them, the
first healthy standby (weight 0, in the listed order) takes it all; with no
healthy provider, a closed but stalled one still sends (stalled reports are
better than none), and with every circuit open the first provider's holds
the batch until its probe time. A provider whose probe is due gets exactly one
delivery, the probe, so that a provider traffic has left still comes back.

The share of each delivery is decided by its id, so a retried delivery goes
to the same provider as before while they stay healthy.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from notifier.deliveries import service as deliveries
from notifier.deliveries.service import Claim
from notifier.providers.circuits import Verdict
from notifier.runtime import Runtime

__all__ = ["STALL_CHECK_SECONDS", "Route", "routes"]

STALL_CHECK_SECONDS = 10.0
"""A process asks the database whether a provider's receipts stall at most this often."""

_stalls: weakref.WeakKeyDictionary[Runtime, dict[str, tuple[float, bool]]] = (
    weakref.WeakKeyDictionary()
)
_stalls_lock = threading.Lock()


@dataclass(slots=True)
class Route:
    """Claims of one channel for one provider, and what its circuit allows."""

    channel: str
    provider: str
    verdict: Verdict
    claims: list[Claim] = field(default_factory=list)


def routes(rt: Runtime, claims: Sequence[Claim], *, reporting: Collection[str]) -> list[Route]:
    """The claims grouped by the provider each goes to now, with that provider's verdict."""
    by_channel: dict[str, list[Claim]] = {}
    for claim in claims:
        by_channel.setdefault(claim.delivery.channel, []).append(claim)
    found: list[Route] = []
    for channel, mine in by_channel.items():
        found.extend(_channel_routes(rt, channel, mine, reporting))
    return [route for route in found if route.claims]


def _channel_routes(
    rt: Runtime, channel: str, claims: list[Claim], reporting: Collection[str]
) -> list[Route]:
    chain = rt.providers(channel)
    now = rt.clock().timestamp()
    period = rt.settings.circuit_open_seconds
    verdicts = {name: rt.circuits.check(name, now=now, open_seconds=period) for name, _ in chain}
    if len(chain) == 1:
        name = chain[0][0]
        return [Route(channel, name, verdicts[name], list(claims))]
    pool = list(claims)
    found: list[Route] = []
    for name, _ in chain:
        if verdicts[name].state == "probe" and pool:
            found.append(Route(channel, name, verdicts[name], [pool.pop(0)]))
    closed = [(name, weight) for name, weight in chain if verdicts[name].state == "closed"]
    healthy = [(n, w) for n, w in closed if n not in reporting or not _stalled(rt, n)]
    usable = healthy or closed
    if not usable:
        first = chain[0][0]
        held = verdicts[first]
        if held.state != "open":  # its probe went out just now: the rest waits a period
            held = Verdict("open", wait=period, reason=held.reason)
        found.append(Route(channel, first, held, pool))
        return found
    weighted = [(n, w) for n, w in usable if w > 0] or usable[:1]
    total = sum(max(w, 1) for _, w in weighted)
    shares = {name: Route(channel, name, verdicts[name]) for name, _ in weighted}
    for claim in pool:
        slot = (claim.delivery.id or 0) % total
        for name, weight in weighted:
            slot -= max(weight, 1)
            if slot < 0:
                shares[name].claims.append(claim)
                break
    found.extend(shares.values())
    return found


def _stalled(rt: Runtime, provider: str) -> bool:
    """Whether ``provider``'s receipts stall (read at most every STALL_CHECK_SECONDS)."""
    now = rt.clock().timestamp()
    with _stalls_lock:
        known = _stalls.setdefault(rt, {}).get(provider)
    if known is not None and now - known[0] < STALL_CHECK_SECONDS:
        return known[1]
    settings = rt.settings
    with rt.db.session() as session:
        overdue = deliveries.overdue_receipts(
            session,
            provider=provider,
            older_than=rt.clock() - timedelta(seconds=settings.receipt_stall_seconds),
            limit=settings.receipt_stall_count,
        )
    stalled = overdue >= settings.receipt_stall_count
    with _stalls_lock:
        _stalls.setdefault(rt, {})[provider] = (now, stalled)
    return stalled
