"""deliver: claim a batch → re-check → restate → send concurrently → record in bulk → fallback.

A task carries up to a few hundred delivery ids of one channel. One UPDATE
claims the rows that are due; one transaction re-checks them (paid since,
quiet hours), renders again what the ledger no longer supports
(flows/restate.py) and builds the messages; the session is closed before the
provider is called, so a slow provider holds leases on rows, not a
connection. The channel sends the batch concurrently (``send_many``) and one
more transaction records every outcome: accepted sends in bulk, failures one
by one with their retry or fallback, and a send whose answer was lost after
the request left as ``ambiguous``, to be resolved, not resent (flows/ambiguous.py).

The claim's lease is kept while the batch works (:class:`LeaseKeeper`): a
slow batch — a slow machine, a slow provider, a backlog after an outage —
must not see its rows taken over and sent a second time by a worker that
found the lease expired. Only a worker that stopped renewing (it died, or
the database is away) loses its rows, and a batch sends only rows whose lease
it holds at that moment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from types import TracebackType

from sqlalchemy import exc as sa_exc
from sqlmodel import Session, col, select

from channels import (
    AmbiguousChannelError,
    Channel,
    ChannelError,
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendOutcome,
    SendResult,
    TransientChannelError,
)
from notifier.billing.models import Bill
from notifier.bounces import verp
from notifier.deliveries import callback_tokens
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.deliveries.service import Claim
from notifier.flows import provider_routes
from notifier.flows.fallback import forget_recipients, record_opt_out, retry_delay, start_fallback
from notifier.flows.push_terms import push_terms
from notifier.flows.reports import apply_report
from notifier.flows.restate import restate_claims
from notifier.notices.rendering import TemplateError
from notifier.privacy.masking import redact_echo
from notifier.providers.circuits import Verdict
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = [
    "BatchOutcome",
    "LeaseKeeper",
    "content_sha256",
    "deliver_batch",
    "record_outcomes",
    "seal",
]

log = logging.getLogger(__name__)
REPORTING_PROVIDERS = frozenset({"twilio", "mitake"})
_CLOSED = Verdict("closed")
# A credential, a SID or a push token: letters and digits, 20 or more (not a code such as
# THIRD_PARTY_AUTH_ERROR, which has no digit).
_TOKEN_LIKE = re.compile(r"\b(?=[A-Za-z_-]*\d)(?=[\d_-]*[A-Za-z])[A-Za-z0-9_-]{20,}")
MAX_RATE_WAIT = 10.0
"""Longer than this, a send gives its worker back and is retried at its slot."""
RENEWALS_PER_LEASE = 3
"""The keeper renews this often per lease: two renewals may fail before the lease runs out."""
MAX_LEASES_HELD = 10
"""A batch still working after this many leases is stuck (provider calls have timeouts far
shorter): its keeper stops renewing, so the rows go to another worker when the lease ends."""
AMBIGUOUS_FIRST_LOOK = 5.0
"""Seconds after an ambiguous send before its provider is first asked: time for the
provider to list what it took. Without a lookup, the first look is at the wait's end."""


@dataclass(slots=True)
class BatchOutcome:
    """What a batch left behind, for the task that ran it."""

    statuses: dict[int, str] = field(default_factory=dict)
    """The status each delivery was left in; absent if it was not ours to send."""
    later: dict[float, list[tuple[int, str]]] = field(default_factory=dict)
    """``(delivery_id, channel)`` to enqueue again after so many seconds (retries, rate)."""
    enqueue: list[tuple[int, str]] = field(default_factory=list)
    """Deliveries created on the way (fallbacks) to enqueue now."""
    resolve: dict[float, list[tuple[int, str]]] = field(default_factory=dict)
    """``(delivery_id, channel)`` of ``ambiguous`` sends to resolve after so many seconds
    (notifier.flows.ambiguous), not to send again."""

    def retry(self, delivery: Delivery, delay: float) -> None:
        assert delivery.id is not None
        # Whole seconds, rounded up: fewer messages, and never before the row is due.
        self.later.setdefault(float(math.ceil(delay)), []).append((delivery.id, delivery.channel))

    def resolve_in(self, delivery: Delivery, delay: float) -> None:
        assert delivery.id is not None
        self.resolve.setdefault(float(math.ceil(delay)), []).append((delivery.id, delivery.channel))

    def merge(self, other: BatchOutcome) -> None:
        self.statuses.update(other.statuses)
        for delay, items in other.later.items():
            self.later.setdefault(delay, []).extend(items)
        self.enqueue.extend(other.enqueue)
        for delay, items in other.resolve.items():
            self.resolve.setdefault(delay, []).extend(items)


class LeaseKeeper:
    """Renews a batch's leases from a thread of its own while the batch sends and records.

    :meth:`held` is asked right before the sends: it renews first when the
    last renewal is older than a renewal period (the claim took long, the
    renewals failed), and answers only the claims whose lease was renewed or
    taken within that period. A row lost meanwhile is not sent.
    """

    def __init__(self, rt: Runtime, claims: Sequence[Claim], *, claimed_at: float) -> None:
        self.rt = rt
        self.claims = list(claims)
        self.lease = rt.settings.lease_seconds
        self.period = self.lease / RENEWALS_PER_LEASE
        self._ours = {c.delivery.id for c in claims if c.delivery.id is not None}
        self._renewed_at = claimed_at
        self._until = claimed_at + MAX_LEASES_HELD * self.lease
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        if self.claims:
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.period)

    def held(self, claims: Sequence[Claim]) -> list[Claim]:
        """The claims among ``claims`` whose lease this batch holds now."""
        with self._lock:
            fresh = time.monotonic() - self._renewed_at < self.period
        if not fresh:
            self.renew()
        with self._lock:
            if time.monotonic() - self._renewed_at >= self.lease:
                return []  # no renewal went through for a whole lease: nothing is surely ours
            return [c for c in claims if c.delivery.id in self._ours]

    def renew(self) -> None:
        """Extend the leases still ours; a failure is logged, and the next period tries again."""
        started = time.monotonic()
        with self._lock:
            ours = [c for c in self.claims if c.delivery.id in self._ours]
        if not ours:
            return
        try:
            with self.rt.db.session() as session:
                renewed = set(
                    deliveries.renew_leases(
                        session, ours, now=self.rt.clock(), lease_seconds=self.lease
                    )
                )
        except sa_exc.OperationalError as exc:
            log.warning(
                "renewing the leases of %d deliveries: the database is away (%s)",
                len(ours),
                type(exc.orig).__name__,
            )
            return
        lost = sorted(i for i in self._ours - renewed if i is not None)
        if lost:
            log.warning(
                "%d deliveries of a batch were taken over while it worked (first: %s); "
                "they are not sent or recorded by it",
                len(lost),
                lost[0],
            )
        with self._lock:
            self._ours &= renewed
            self._renewed_at = started

    def _keep(self) -> None:
        while not self._stop.wait(self.period):
            if time.monotonic() > self._until:
                log.error(
                    "a batch of %d deliveries still works after %d leases: its leases are "
                    "left to run out",
                    len(self.claims),
                    MAX_LEASES_HELD,
                )
                return
            self.renew()


def deliver_batch(rt: Runtime, delivery_ids: Sequence[int]) -> BatchOutcome:
    """Send the due deliveries among ``delivery_ids``; the caller enqueues what it returns."""
    outcome = BatchOutcome()
    claimed_at = time.monotonic()  # before the claim's clock: the lease ends no sooner than this
    now = rt.clock()
    with rt.db.session() as session:
        channels = dict(
            session.exec(
                select(Delivery.id, Delivery.channel).where(col(Delivery.id).in_(delivery_ids))
            ).all()
        )
        # Postcards wait in `queued` for the day's print batch (flows/postcards.py).
        for delivery_id, name in channels.items():
            if delivery_id is not None and rt.provider(name) == "print":
                outcome.statuses[delivery_id] = DeliveryStatus.QUEUED
        sendable = [
            i for i, name in channels.items() if i is not None and i not in outcome.statuses
        ]
        claims = deliveries.claim_many(
            session,
            sendable,
            token=uuid.uuid4().hex,
            now=now,
            lease_seconds=rt.settings.lease_seconds,
        )
        notifications = _notifications(session, claims)
        claims = _hold_back(rt, session, claims, notifications, now, outcome)
        restate_claims(rt, session, claims, notifications, now)
        due_dates = _push_due_dates(session, claims, notifications)
    # After the claim's transaction: a probe taken in the database circuits is a write of its own.
    routes = provider_routes.routes(rt, claims, reporting=REPORTING_PROVIDERS)
    with LeaseKeeper(rt, claims, claimed_at=claimed_at) as keeper:
        for route in routes:
            messages = [
                _message(
                    rt,
                    c.delivery,
                    notifications[c.delivery.notification_id],
                    due_dates,
                    now,
                    route.provider,
                )
                for c in route.claims
            ]
            seals = {
                m.delivery_id: seal(rt, c.delivery, content_sha256(m))
                for c, m in zip(route.claims, messages, strict=True)
            }
            channel = rt.channel(route.channel, route.provider)
            outcome.merge(_send(rt, keeper, channel, route.claims, messages, seals, route.verdict))
    return outcome


def _send(
    rt: Runtime,
    keeper: LeaseKeeper,
    channel: Channel,
    claims: list[Claim],
    messages: list[Message],
    seals: dict[int, dict[str, str]],
    verdict: Verdict = _CLOSED,
) -> BatchOutcome:
    """Send one channel's claimed messages at their rate slots, then record the outcomes.

    ``verdict``: the provider's circuit. Open, nothing is sent (the claims wait
    for its probe time); the probe, the first message goes alone, and the rest
    follow if it closed the circuit, or wait for the next probe if not.
    """
    outcome = BatchOutcome()
    if verdict.state == "open":
        return _later(rt, claims, verdict.wait, reason=_circuit_reason(channel.provider, verdict))
    if verdict.state == "probe" and len(claims) > 1:
        outcome.merge(_send(rt, keeper, channel, claims[:1], messages[:1], seals, verdict))
        now, period = rt.clock().timestamp(), rt.settings.circuit_open_seconds
        after = rt.circuits.check(channel.provider, now=now, open_seconds=period)
        if after.state != "closed":
            wait = after.wait if after.state == "open" else period
            rest = _later(rt, claims[1:], wait, reason=_circuit_reason(channel.provider, after))
        else:
            rest = _send(rt, keeper, channel, claims[1:], messages[1:], seals)
        outcome.merge(rest)
        return outcome
    held = {c.delivery.id for c in keeper.held(claims)}
    if len(held) < len(claims):
        # Another worker owns these now (or may): sending them here would be the second send.
        log.warning(
            "%s: %d of %d claimed deliveries not sent, their lease is no longer ours",
            channel.provider,
            len(claims) - len(held),
            len(claims),
        )
        kept = [i for i, c in enumerate(claims) if c.delivery.id in held]
        claims, messages = [claims[i] for i in kept], [messages[i] for i in kept]
        if not claims:
            return outcome
    per_second = rt.settings.rate_limits.get(channel.provider)
    delays: list[float] = []
    if per_second:
        # Slots for what can go out within MAX_RATE_WAIT; the rest gives its worker back.
        fits = max(1, min(len(claims), int(per_second * MAX_RATE_WAIT)))
        first = rt.rate_limiter.reserve(channel.provider, per_second, fits)
        if first > MAX_RATE_WAIT:
            fits = 0
        else:
            delays = [first + i / per_second for i in range(fits)]
        if fits < len(claims):
            wait = max(first, MAX_RATE_WAIT) if fits == 0 else first + fits / per_second
            outcome.merge(_later(rt, claims[fits:], wait, reason=f"{channel.provider} rate limit"))
            claims, messages = claims[:fits], messages[:fits]
    if not claims:
        return outcome
    try:
        sent: Sequence[SendOutcome] = rt.run_async(channel.send_many(messages, delays=delays))
    except Exception as exc:
        # The channel itself broke (not one message): every send counts as a transient failure.
        log.exception("%s: a batch of %d failed as a whole", channel.provider, len(claims))
        error = TransientChannelError(f"{type(exc).__name__}: {exc}", code="unexpected")
        sent = [error] * len(claims)
    _follow_circuit(rt, channel.provider, verdict, sent)
    # An accepted send's timeline entry says what went out (the service record's proof).
    sent = [
        replace(result, detail={**result.detail, **seals.get(message.delivery_id, {})})
        if isinstance(result, SendResult)
        else result
        for message, result in zip(messages, sent, strict=True)
    ]
    outcome.merge(_record_while_leased(rt, list(zip(claims, sent, strict=True))))
    return outcome


def _circuit_reason(provider: str, verdict: Verdict) -> str:
    return f"provider {provider} circuit open: {verdict.reason}"


def _provider_reason(exc: ProviderChannelError) -> str:
    """The error as the ops pages show it: no number, address or credential-like token."""
    return _TOKEN_LIKE.sub("***", redact_echo(str(exc), ""))


def _follow_circuit(
    rt: Runtime, provider: str, verdict: Verdict, sent: Sequence[SendOutcome]
) -> None:
    """Open the provider's circuit on a ProviderChannelError; close it on a probe that worked."""
    ours = [r for r in sent if isinstance(r, ProviderChannelError)]
    for error in ours:
        error.provider = error.provider or provider
    if ours:
        now = rt.clock().timestamp()
        period = rt.settings.circuit_open_seconds
        reason = _provider_reason(ours[0])
        if rt.circuits.trip(provider, reason, now=now, open_seconds=period):
            log.error("provider %s circuit open: %s", provider, reason)
        return
    # Accepted, or refused for the recipient's sake: either way our account works again.
    worked = not all(isinstance(r, TransientChannelError) for r in sent)
    if verdict.state == "probe" and worked and rt.circuits.close(provider):
        log.warning("provider %s circuit closed: the probe send went through", provider)


def _record_while_leased(rt: Runtime, sends: list[tuple[Claim, SendOutcome]]) -> BatchOutcome:
    """:func:`record_outcomes`, tried again while the database is away and the lease holds.

    The messages are out: losing their outcomes to a database restart would
    leave their rows to the reconciler, which holds rows whose lease ran out as
    ambiguous and asks the provider, and resends what it cannot ask (push,
    email) after the ambiguous wait. So the outcomes wait here, retried with a
    growing pause, until recorded or until the lease and that wait are spent:
    until then an answer recorded here settles the row, even one held ambiguous
    meanwhile (:func:`record_outcomes`).
    """
    # Past the lease the reconciler holds the rows ambiguous, and record_outcomes settles
    # them from here; past the wait they may have been sent again, and the outcome is moot.
    deadline = time.monotonic() + rt.settings.lease_seconds + rt.settings.ambiguous_wait_seconds
    pause = 0.2
    while True:
        try:
            return record_outcomes(rt, sends)
        except sa_exc.OperationalError as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning(
                "recording %d outcomes: the database is away (%s); again in %.1f s",
                len(sends),
                type(exc.orig).__name__,
                pause,
            )
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _later(rt: Runtime, claims: Sequence[Claim], wait: float, *, reason: str) -> BatchOutcome:
    """Back to ``queued`` without counting an attempt; due at the provider's next free slot."""
    outcome = BatchOutcome()
    now = rt.clock()
    with rt.db.session() as session:
        moved = set(
            deliveries.transition_many(
                session,
                claims,
                DeliveryStatus.QUEUED,
                now=now,
                available_at=now + timedelta(seconds=wait),
                detail={"reason": reason, "retry_in": round(wait, 1)},
            )
        )
    for claim in claims:
        if claim.delivery.id in moved:
            outcome.statuses[claim.delivery.id] = DeliveryStatus.QUEUED
            outcome.retry(claim.delivery, wait)
    return outcome


def _notifications(session: Session, claims: Sequence[Claim]) -> dict[int, Notification]:
    ids = {claim.delivery.notification_id for claim in claims}
    if not ids:
        return {}
    rows = session.exec(select(Notification).where(col(Notification.id).in_(ids))).all()
    return {row.id: row for row in rows if row.id is not None}


def _hold_back(
    rt: Runtime,
    session: Session,
    claims: list[Claim],
    notifications: dict[int, Notification],
    now: datetime,
    outcome: BatchOutcome,
) -> list[Claim]:
    """Cancel what was paid since and defer what falls in quiet hours; the rest goes out."""
    bills = {n.bill_no for n in notifications.values() if n.bill_no}
    paid = set(
        session.exec(
            select(Bill.bill_no).where(col(Bill.bill_no).in_(bills), col(Bill.paid_at).is_not(None))
        ).all()
        if bills
        else ()
    )
    cancelled = [c for c in claims if notifications[c.delivery.notification_id].bill_no in paid]
    held = set(
        deliveries.transition_many(
            session, cancelled, DeliveryStatus.CANCELLED, now=now, detail={"reason": "bill paid"}
        )
    )
    outcome.statuses.update(dict.fromkeys(held, DeliveryStatus.CANCELLED))
    quiet = rt.policy.quiet_hours
    opens = quiet.window_opens(now, rt.policy.tz) if quiet is not None else None
    if quiet is not None and opens is not None:
        deferred = [
            c
            for c in claims
            if c.delivery.id not in held
            and not c.delivery.quiet_hours_waived
            and rt.policy.holds_in_quiet_hours(
                c.delivery.channel, urgent=notifications[c.delivery.notification_id].urgent
            )
        ]
        moved = deliveries.transition_many(
            session,
            deferred,
            DeliveryStatus.DEFERRED,
            now=now,
            available_at=opens,
            detail={"reason": "quiet hours", "until": opens.isoformat()},
        )
        outcome.statuses.update(dict.fromkeys(moved, DeliveryStatus.DEFERRED))
        held |= {c.delivery.id for c in deferred if c.delivery.id is not None}
    # A claim refused above (lost meanwhile) is not sent either.
    held |= {c.delivery.id for c in cancelled if c.delivery.id is not None}
    return [c for c in claims if c.delivery.id not in held]


def _push_due_dates(
    session: Session, claims: Sequence[Claim], notifications: dict[int, Notification]
) -> dict[str, date]:
    """The due dates of the bills the claimed pushes are about (their expiry)."""
    bills = {
        bill_no
        for c in claims
        if c.delivery.channel == "push"
        and (bill_no := notifications[c.delivery.notification_id].bill_no)
    }
    if not bills:
        return {}
    rows = session.exec(select(Bill).where(col(Bill.bill_no).in_(bills))).all()
    return {bill.bill_no: bill.due_date for bill in rows}


def _message(
    rt: Runtime,
    delivery: Delivery,
    notification: Notification,
    due_dates: dict[str, date],
    now: datetime,
    provider: str,
) -> Message:
    assert delivery.id is not None
    content = delivery.content
    callback_url = menu_url = machine_url = None
    if provider == "twilio":
        # Opaque, signed and dated tokens, not the delivery id (callback_tokens.py).
        key = callback_tokens.signing_key(rt.settings)
        status_token = callback_tokens.issue(key, delivery.id, purpose="status", now=now)
        callback_url = callback_tokens.callback_url(rt.settings, "status", status_token)
        if delivery.channel == "voice":
            menu_token = callback_tokens.issue(key, delivery.id, purpose="gather", now=now)
            menu_url = callback_tokens.callback_url(rt.settings, "gather", menu_token)
            machine_token = callback_tokens.issue(key, delivery.id, purpose="machine", now=now)
            machine_url = callback_tokens.callback_url(rt.settings, "machine", machine_token)
    elif provider == "mitake" and rt.settings.mitake.callback:
        # Mitake signs nothing: this token is all that vouches for its reports.
        key = callback_tokens.signing_key(rt.settings)
        token = callback_tokens.issue(key, delivery.id, purpose="status", now=now)
        callback_url = callback_tokens.public_url(
            rt.settings, f"/v1/callbacks/mitake/status/{token}"
        )
    # What the app needs to open the right screen (push) or a printer to sort by.
    data = {
        "delivery_id": str(delivery.id),
        "notification_id": str(delivery.notification_id),
        "type": notification.type,
        **({"bill_no": notification.bill_no} if notification.bill_no else {}),
        **({"usage_period": notification.usage_period} if notification.usage_period else {}),
    }
    return_path = None
    if delivery.channel == "email" and provider == "smtp":
        # Bounces come back to a signed address naming this delivery (notifier.bounces.verp).
        return_path = verp.bounce_address(rt.settings, delivery.id, now=now)
    terms = None
    if delivery.channel == "push":
        due = due_dates.get(notification.bill_no) if notification.bill_no else None
        terms = push_terms(rt, notification, due, now=now)
    return Message(
        delivery_id=delivery.id,
        channel=delivery.channel,
        to=tuple(delivery.recipients),
        body=content.get("body") or "",
        subject=content.get("subject"),
        html=content.get("html"),
        language=delivery.language,
        attempt=delivery.attempts + 1,
        data=data,
        callback_url=callback_url,
        menu_url=menu_url,
        machine_url=machine_url,
        expires_at=terms.expires_at if terms else None,
        collapse_key=terms.collapse_key if terms else None,
        priority=terms.priority if terms else "normal",
        return_path=return_path,
    )


def content_sha256(message: Message) -> str:
    """SHA-256 (hex) of the content a channel is handed: what the customer gets.

    An SMS's text or a call's script, as UTF-8; an email's subject, text and
    HTML, or a push's title, text and data, as one canonical JSON object (keys
    sorted, no spaces, UTF-8). The MIME headers an email channel adds per send
    (Message-ID, Date) are not the notice, and a push's data names the delivery.
    """
    if message.channel in {"email", "push"}:
        parts: dict[str, object] = {"subject": message.subject, "body": message.body}
        if message.channel == "email":
            parts["html"] = message.html
        else:
            parts["data"] = dict(message.data)
        raw = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    else:
        raw = message.body
    return hashlib.sha256(raw.encode()).hexdigest()


def seal(rt: Runtime, delivery: Delivery, sha256: str) -> dict[str, str]:
    """What a send's timeline entry keeps as proof: the content's hash, the template's identity."""
    proof = {"content_sha256": sha256}
    try:
        template = rt.renderer.identity(delivery.event_type, delivery.channel, delivery.language)
    except TemplateError as exc:
        # The notice still goes out as rendered; its record lacks only the template's version.
        log.warning("delivery %s: no template identity: %s", delivery.id, exc)
        return proof
    return {**proof, "template": template.files[0], "template_sha256": template.sha256}


def record_outcomes(rt: Runtime, sends: Sequence[tuple[Claim, SendOutcome]]) -> BatchOutcome:
    """Record what the provider answered to each claimed send, in one transaction."""
    outcome = BatchOutcome()
    now = rt.clock()
    accepted = [(claim, result) for claim, result in sends if isinstance(result, SendResult)]
    with rt.db.session() as session:
        recorded = deliveries.record_sends(
            session,
            [
                (claim, result.status, result.provider, result.provider_id, _detail(result))
                for claim, result in accepted
            ],
            now=now,
        )
        ours = set(recorded)
        # A claim lost to the lease (the database was away) while the send went out: the
        # reconciler made the row ambiguous, and this answer settles it as a report would.
        for claim, result in accepted:
            delivery_id = claim.delivery.id
            if delivery_id is None or delivery_id in ours:
                continue
            if deliveries.settle_ambiguous(
                session,
                delivery_id,
                result.status,
                now=now,
                provider=result.provider,
                provider_id=result.provider_id,
                last_error=None,
                detail={**_detail(result), "found_by": "worker"},
            ):
                ours.add(delivery_id)
        final_now: dict[str, list[int]] = {}
        reporting: list[int] = []
        for claim, result in accepted:
            delivery_id = claim.delivery.id
            if delivery_id not in ours:
                continue
            assert delivery_id is not None
            outcome.statuses[delivery_id] = result.status
            if result.status == DeliveryStatus.SENT and result.provider in REPORTING_PROVIDERS:
                reporting.append(delivery_id)  # final when its report comes
            else:
                final_now.setdefault(result.status, []).append(delivery_id)
            if result.rejected:
                forget_recipients(session, claim.delivery, result.rejected)
        for status, ids in final_now.items():
            webhooks.delivery_outcomes(session, ids, status, now=now)
        # A provider's report can beat our own record of the send.
        early = deliveries.early_reports(session, reporting)
        for claim, error in sends:
            if isinstance(error, ProviderChannelError):
                _held_by_circuit(rt, session, claim, error, now, outcome)
            elif isinstance(error, AmbiguousChannelError):
                _ambiguous(rt, session, claim, error, now, outcome)
            elif isinstance(error, TransientChannelError):
                _transient(rt, session, claim, error, now, outcome)
            elif isinstance(error, ChannelError):
                _permanent(rt, session, claim, error, now, outcome)
    for delivery_id, report in early.items():
        after = apply_report(rt, delivery_id, report)
        if after.status is not None:
            outcome.statuses[delivery_id] = after.status
        outcome.enqueue.extend(after.enqueue)
    return outcome


def _detail(result: SendResult) -> dict[str, object]:
    detail = {"provider": result.provider, "provider_id": result.provider_id, **result.detail}
    if result.rejected:
        detail["rejected"] = len(result.rejected)
    return detail


def _held_by_circuit(
    rt: Runtime,
    session: Session,
    claim: Claim,
    exc: ProviderChannelError,
    now: datetime,
    outcome: BatchOutcome,
) -> None:
    """Our provider account failed, not the customer: back to ``queued``, no attempt counted,
    no fallback, no recipient marked. Due at the probe time, or at once when the channel has
    another provider to go to (flows/provider_routes.py routes it there)."""
    alone = len(rt.providers(claim.delivery.channel)) == 1
    delay = rt.settings.circuit_open_seconds if alone else 0.0
    moved = deliveries.transition(
        session,
        claim,
        DeliveryStatus.QUEUED,
        now=now,
        available_at=now + timedelta(seconds=delay),
        detail={
            "reason": f"provider {exc.provider} circuit open: {_provider_reason(exc)}",
            "code": exc.code,
            "retry_in": round(delay, 1),
        },
    )
    if moved and claim.delivery.id is not None:
        outcome.statuses[claim.delivery.id] = DeliveryStatus.QUEUED
        outcome.retry(claim.delivery, delay)


def _transient(
    rt: Runtime,
    session: Session,
    claim: Claim,
    exc: TransientChannelError,
    now: datetime,
    outcome: BatchOutcome,
) -> None:
    retry = rt.policy.retry
    attempt = claim.delivery.attempts + 1
    if attempt >= retry.max_attempts:
        _permanent(
            rt, session, claim, exc, now, outcome, reason=f"gave up after {attempt} attempts"
        )
        return
    delay = max(retry_delay(rt, attempt), exc.retry_after or 0.0)
    moved = deliveries.transition(
        session,
        claim,
        DeliveryStatus.QUEUED,
        now=now,
        attempted=True,
        available_at=now + timedelta(seconds=delay),
        last_error=str(exc)[:1000],
        detail={
            "error": str(exc),
            "code": exc.code,
            "transient": True,
            "retry_in": round(delay, 1),
        },
    )
    if moved and claim.delivery.id is not None:
        outcome.statuses[claim.delivery.id] = DeliveryStatus.QUEUED
        outcome.retry(claim.delivery, delay)


def _ambiguous(
    rt: Runtime,
    session: Session,
    claim: Claim,
    exc: AmbiguousChannelError,
    now: datetime,
    outcome: BatchOutcome,
) -> None:
    """The provider may have the send: hold it as ``ambiguous`` and schedule its resolution.

    An attempt is counted (it may have gone out); the row waits for the lookup,
    the provider's report or the end of ``ambiguous_wait_seconds``
    (``available_at``), whichever settles it first, and is not sent again meanwhile.
    """
    wait = rt.settings.ambiguous_wait_seconds
    began = claim.delivery.updated_at  # the claim's time: the attempt began then
    moved = deliveries.finish(
        session,
        claim,
        DeliveryStatus.AMBIGUOUS,
        now=now,
        available_at=now + timedelta(seconds=wait),
        last_error=str(exc)[:1000],
        detail={
            "error": str(exc),
            "code": exc.code,
            "reason": "no answer after the request left: the provider may have it; "
            "not sent again until it says it has no record",
            "attempt_began": began.isoformat(),
            "resolve_by": (now + timedelta(seconds=wait)).isoformat(),
        },
    )
    if moved and claim.delivery.id is not None:
        outcome.statuses[claim.delivery.id] = DeliveryStatus.AMBIGUOUS
        looks_up = type(rt.channel(claim.delivery.channel)).lookup is not Channel.lookup
        outcome.resolve_in(claim.delivery, min(AMBIGUOUS_FIRST_LOOK, wait) if looks_up else wait)


def _permanent(
    rt: Runtime,
    session: Session,
    claim: Claim,
    exc: ChannelError,
    now: datetime,
    outcome: BatchOutcome,
    *,
    reason: str | None = None,
) -> None:
    failed = claim.delivery
    assert failed.id is not None
    finished = deliveries.finish(
        session,
        claim,
        DeliveryStatus.FAILED,
        now=now,
        last_error=str(exc)[:1000],
        detail={
            "error": str(exc),
            "code": exc.code,
            "permanent": True,
            **({"reason": reason} if reason else {}),
        },
    )
    if not finished:
        return
    outcome.statuses[failed.id] = DeliveryStatus.FAILED
    webhooks.delivery_outcomes(session, [failed.id], DeliveryStatus.FAILED, now=now)
    refused: tuple[str, ...] = ()
    if isinstance(exc, PermanentChannelError):
        if exc.opt_out:
            record_opt_out(session, failed)
        if exc.rejected:
            forget_recipients(session, failed, exc.rejected)
        refused = exc.rejected
    outcome.enqueue.extend(start_fallback(rt, session, failed, frozenset(refused)))
