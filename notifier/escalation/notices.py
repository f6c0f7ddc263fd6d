"""Printed visit notices: the ``escalation.visit`` template laid out one notice a page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import date

from channels.notice_print import Notice, write_notices
from notifier.escalation.lists import CaseRow
from notifier.notices.content import visit_notice_context
from notifier.notices.rendering import Renderer
from notifier.settings import Settings

__all__ = ["notices_pdf"]


def notices_pdf(
    settings: Settings, renderer: Renderer, rows: Sequence[CaseRow], *, visit_date: date
) -> bytes:
    """One PDF with a notice a page for ``rows``, dated ``visit_date``, signed by each assignee."""
    if not rows:
        raise ValueError("no visit cases to print")
    notices = []
    for row in rows:
        context = visit_notice_context(
            settings,
            account_no=row.account_no,
            name=row.name,
            language=row.language,
            bills=[asdict(b) for b in row.bills],
            visit_date=visit_date,
            agent_name=row.assignee or "",
        )
        content = renderer.render("escalation.visit", "notice", row.language, context)
        notices.append(
            Notice(
                reference=f"case {row.case_id} · {row.account_no}",
                title=content.subject or "",
                body=content.body,
                language=content.language,
            )
        )
    return write_notices(notices, title=f"Visit notices {visit_date.isoformat()}")
