"""An agent's list as a file (CSV, XLSX, ODS): written once, and recorded in the audit trail.

The API, the agent pages and the CLI hand out the same file the same way;
every download is audited, whoever asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlmodel import Session

from notifier.audit import service as audit
from notifier.escalation.lists import agent_list, export_table
from notifier.exports import tables as exports

__all__ = ["ListFile", "list_file"]


@dataclass(frozen=True)
class ListFile:
    body: bytes
    filename: str
    media_type: str
    cases: int


def list_file(
    session: Session,
    *,
    agent_id: int,
    kind: str,
    fmt: exports.Format,
    today: date,
    tz: ZoneInfo,
    actor: str,
    language: str = "zh-TW",
) -> ListFile:
    """Today's ``kind`` list of ``agent_id`` as a ``fmt`` file; the download is audited.

    Protections and spoken languages are written as their labels in ``language``.
    """
    rows = agent_list(session, agent_id, kind, today=today)
    audit.record(
        session,
        actor=actor,
        action="list.export",
        target=f"agent {agent_id}",
        detail={"kind": kind, "format": fmt, "day": today.isoformat(), "cases": len(rows)},
    )
    headers, table = export_table(rows, kind, tz=tz, language=language)
    return ListFile(
        body=exports.write_table(headers, table, fmt, sheet=f"{kind}s {today.isoformat()}"),
        filename=f"{kind}s-{agent_id}-{today.isoformat()}.{fmt}",
        media_type=exports.MEDIA_TYPES[fmt],
        cases=len(rows),
    )
