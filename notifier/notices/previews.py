"""What a notice would say, before it is sent: for ops reviewing templates.

Without an account the sample context of the event is used (the longest
realistic values); with one, its name, unpaid bills and total replace the
sample's, so ops see exactly what that customer would get.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from notifier.accounts.models import Account
from notifier.billing import service as billing
from notifier.notices.content import ledger_context, pay_link, sms_segments
from notifier.notices.rendering import RenderedContent, Renderer, sample_context
from notifier.privacy.masking import mask_account_no
from notifier.settings import Settings

__all__ = ["Preview", "UnknownAccount", "preview"]


@dataclass(frozen=True, slots=True)
class Preview:
    event_type: str
    channel: str
    content: RenderedContent
    segments: int | None


class UnknownAccount(LookupError):
    """The account to preview for is not on file."""


def preview(
    renderer: Renderer,
    settings: Settings,
    session: Session,
    event_type: str,
    channel: str,
    *,
    language: str | None = None,
    level: int = 1,
    account_no: str | None = None,
) -> Preview:
    """Render one notice as it would go out; raises TemplateError or UnknownAccount."""
    context: dict[str, Any] = sample_context(event_type, level=level)
    context["service_phone"] = settings.service_phone
    context["utility"] = settings.identity.context()
    if account_no is not None:
        account = session.get(Account, account_no)
        if account is None:
            raise UnknownAccount(f"no account {account_no}")
        # The business date where the utility works decides what is overdue.
        today = datetime.now(ZoneInfo(settings.timezone)).date()
        _overlay_account(session, context, account, level, today)
    if context.get("bill"):
        # The link the service would really send (an opaque reference), not the sample's.
        context["pay_url"] = pay_link(settings, context["bill"]["bill_no"])
    if language:
        context["language"] = language
    content = renderer.render(event_type, channel, str(context["language"]), context)
    return Preview(
        event_type=event_type,
        channel=channel,
        content=content,
        segments=sms_segments(content.body) if channel == "sms" else None,
    )


def _overlay_account(
    session: Session, context: dict[str, Any], account: Account, level: int, today: date
) -> None:
    unpaid = billing.unpaid_bills(session, account.account_no)
    context["language"] = account.language
    context["account"] = {
        "account_no": account.account_no,
        "account_no_masked": mask_account_no(account.account_no),
        "name": account.name,
    }
    if unpaid:
        # As process_event would: the reminder is about the bill it names; here the
        # oldest at level 2 and the newest at level 1, like the samples.
        about = unpaid[0] if level >= 2 else unpaid[-1]
        context.update(ledger_context(about, unpaid, today))
