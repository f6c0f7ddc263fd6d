"""The collections ladder's notices: the final demand and the reconnection confirmation.

The ladder (notifier.escalation.ladder, .stages) writes these as notifications in
the transaction that moves the case; this flow renders their deliveries on the
channels the policy lists for them (``routes.collection.*``), as the ledger says
now, and enqueues them. It runs after each sweep and each payment, and the
reconciler runs it too, so a notice written by a process without a renderer (the
CLI's sweep) or whose enqueue was lost still goes out.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlmodel import col, select

from notifier.deliveries.models import Delivery, Notification, NotificationStatus
from notifier.escalation import stages
from notifier.flows import unreachable
from notifier.flows.process_event import context_for, create_deliveries
from notifier.policy.routing import plan
from notifier.runtime import Runtime

__all__ = ["write_stage_notices"]

log = logging.getLogger(__name__)


def write_stage_notices(rt: Runtime, *, limit: int = 1000) -> list[tuple[int, str]]:
    """Render the deliveries of ladder notices that have none yet; enqueue them; their ids."""
    created: list[tuple[int, str]] = []
    with rt.db.session() as session:
        has_delivery = sa.select(1).where(col(Delivery.notification_id) == col(Notification.id))
        pending = session.exec(
            select(Notification)
            .where(
                col(Notification.type).in_(stages.LADDER_NOTICES),
                Notification.status == NotificationStatus.ACTIVE,
                ~has_delivery.exists(),
            )
            .order_by(col(Notification.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for notification in pending:
            account, context = context_for(rt, session, notification)
            planned = plan(
                rt.policy,
                account,
                notification.type,
                notification.level,
                rt.has_template(notification.type),
            )
            if not planned:
                notification.status = NotificationStatus.UNREACHABLE
                session.add(notification)
                unreachable.report(rt, session, [(notification, account)])
                continue
            rows = create_deliveries(
                rt, session, notification, planned, context=context, note="collections ladder"
            )
            created += [(d.id, d.channel) for d in rows if d.id is not None]
    if created:
        rt.dispatcher.deliver(created)
        log.info("collections ladder: %d deliveries of its notices enqueued", len(created))
    return created
