"""The printed final demand (限期催繳通知書): an A4 letter in the printed visit notice's style.

The ``collection.final_demand`` notice's ``notice`` document, laid out one letter a page
by :func:`channels.notice_print.write_notices`: what the ledger says as it is printed,
the demand's date and deadline from its stage step. Its posted copy is the demand's
postcard (proven by the print batch's manifest); this letter is what a supervisor
prints for registered mail or a dispute.
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session

from channels.notice_print import Notice, write_notices
from notifier.accounts.models import Account
from notifier.billing import service as billing
from notifier.billing.models import Bill
from notifier.escalation import stages
from notifier.escalation.models import CollectionStage
from notifier.notices.content import collection_context
from notifier.notices.rendering import Renderer
from notifier.settings import Settings

__all__ = ["final_demand_pdf"]


def final_demand_pdf(
    settings: Settings,
    renderer: Renderer,
    session: Session,
    steps: list[CollectionStage],
    *,
    today: date,
) -> bytes:
    """One PDF with the final demand letter of each step (a ``final_demand`` stage step)."""
    if not steps:
        raise ValueError("no final demands to print")
    letters = []
    for step in steps:
        account = session.get(Account, step.account_no)
        notification_bill = None
        if step.notification_id is not None:
            notice = stages.notice_of(session, step.notification_id)
            notification_bill = session.get(Bill, notice.bill_no) if notice.bill_no else None
        assert account is not None and step.stage == stages.FINAL_DEMAND
        context = collection_context(
            settings,
            account,
            stages.FINAL_DEMAND_NOTICE,
            bill=notification_bill,
            unpaid=billing.unpaid_bills(session, account.account_no),
            today=today,
            on=step.on,
            deadline=step.deadline,
        )
        content = renderer.render(stages.FINAL_DEMAND_NOTICE, "notice", account.language, context)
        letters.append(
            Notice(
                reference=f"case {step.escalation_id} · {account.account_no} · {step.on}",
                title=content.subject or "",
                body=content.body,
                language=content.language,
            )
        )
    return write_notices(letters, title=f"Final demands {today.isoformat()}")
