"""``notifier audit``: the audit trail, newest first, one tab-separated line an entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from notifier.cli.common import database
from notifier.cli.common import settings as get_settings

__all__ = ["audit_command"]


def audit_command(
    action: Annotated[
        str | None, typer.Option(help="only this action: pii.view, list.export, key.revoked, …")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="only this actor: 'user 3 (alice)', 'key 5 (billing)', cli")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"],
            help="from this business day (or time), in the policy's time zone",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="at most this many")] = 100,
) -> None:
    """Print the audit trail newest first: id, time (UTC), actor, action, target, detail."""
    from notifier.audit.service import list_entries
    from notifier.policy.rules import load_policy

    settings = get_settings()
    start = None
    if since is not None:
        tz = load_policy(settings.policy_file).tz
        start = since.replace(tzinfo=tz)
    with database().session() as session:
        page = list_entries(session, action=action, actor=actor, since=start, limit=limit)
    typer.echo("id\tat (UTC)\tactor\taction\ttarget\tdetail")
    for e in page.entries:
        detail = json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else "-"
        at = f"{e.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        fields = (str(e.id), at, e.actor, e.action, e.target or "-", detail)
        typer.echo("\t".join(f.replace("\t", " ").replace("\n", " ") for f in fields))
    if page.next_before is not None:
        typer.echo(f"more entries: --limit above {limit}", err=True)
