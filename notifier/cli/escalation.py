"""``notifier escalate``, ``notifier agents …``, ``notifier calls|visits pull`` and ``visits notices``."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from notifier.cli.common import runtime

if TYPE_CHECKING:
    from notifier.escalation.models import SweepRun
    from notifier.runtime import Runtime

__all__ = ["agents_app", "calls_app", "escalate", "visits_app"]

agents_app = typer.Typer(
    help="Escalation agents: add, list, change capacity or languages, disable.",
    no_args_is_help=True,
)
calls_app = typer.Typer(help="Call lists of caller agents.", no_args_is_help=True)
visits_app = typer.Typer(
    help="Visit lists and printed notices of field agents.", no_args_is_help=True
)

AsOf = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="business date (default: today)"),
]
AgentId = Annotated[int, typer.Option("--agent", help="the agent's id (notifier agents list)")]
Capacity = Annotated[
    int | None,
    typer.Option("--capacity", help="cases a business day they can take (default: no limit)"),
]
Languages = Annotated[
    str,
    typer.Option(
        help="languages they speak, comma-separated: zh-TW, nan (台語), hak (客語), en, vi, id"
    ),
]
_OPTION = {"daily_capacity": "--capacity", "languages": "--languages"}
"""The option that carries each field, for an error naming it."""
Output = Annotated[
    str, typer.Option("-o", "--output", help="file to write; '-' is standard output")
]


def escalate(
    as_of: AsOf = None,
    quiet: Annotated[bool, typer.Option(help="no progress, only the summary")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="what the sweep would do, changing nothing")
    ] = False,
    proposed: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="with --dry-run: a proposed policy file, run beside the current one",
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="with --dry-run: the figures as JSON")
    ] = False,
) -> None:
    """Run the escalation sweep as of a business date (idempotent: safe to run again)."""
    from notifier.escalation.sweep import sweep

    if (proposed is not None or as_json) and not dry_run:
        raise typer.BadParameter(
            "goes with --dry-run", param_hint="--policy" if proposed else "--json"
        )
    rt = runtime()
    day = as_of.date() if as_of else rt.policy.business_date(rt.clock())
    if dry_run:
        _dry_run(rt, day, proposed, as_json=as_json)
        return
    with contextlib.ExitStack() as stack:
        bar: Any = None  # typer's progress bar (its class is private)
        reported = 0

        def progress(run: SweepRun) -> None:
            nonlocal bar, reported
            if quiet or not run.accounts:
                return
            if sys.stderr.isatty():
                if bar is None:
                    label = f"sweep as of {day}: {run.accounts} accounts to check"
                    bar = stack.enter_context(
                        typer.progressbar(length=run.accounts, label=label, file=sys.stderr)
                    )
                bar.update(run.checked - bar.pos)
            elif run.checked == run.accounts or run.checked - reported >= run.accounts / 10:
                # A log, not a terminal: a line every tenth of the way.
                typer.echo(f"checked {run.checked} of {run.accounts} accounts", err=True)
                reported = run.checked

        run = sweep(
            rt.db, rt.policy.escalation, day, trigger="cli", progress=progress, clock=rt.clock
        )
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    typer.echo(
        f"sweep {run.id} as of {day}: {run.accounts} accounts checked in {seconds:.1f} s; "
        f"{run.opened} cases opened ({run.assigned} assigned, {run.unassigned} unassigned), "
        f"{run.joined} bills joined open cases, {run.closed} paid cases closed"
    )


def _dry_run(rt: Runtime, day: date, proposed: Path | None, *, as_json: bool) -> None:
    """Print what the sweep would do as of ``day``, and under ``proposed`` beside it."""
    from pydantic import ValidationError

    from notifier.escalation.proposal import compare, dry_run
    from notifier.policy.rules import load_policy

    policy = None
    if proposed is not None:
        try:
            policy = load_policy(proposed)
        except ValidationError as exc:
            bad = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(file)'}: {error['msg']}"
                for error in exc.errors()
            )
            raise typer.BadParameter(f"{proposed}: {bad}", param_hint="--policy") from None
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--policy") from None
    current = dry_run(rt.db, rt.policy.escalation, day, clock=rt.clock)
    then = dry_run(rt.db, policy.escalation, day, clock=rt.clock) if policy else None
    if as_json:
        out: dict[str, object] = {
            "as_of": day.isoformat(),
            "current": current.as_dict(),
            "proposed": then.as_dict() if then else None,
        }
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    typer.echo(f"dry run as of {day}: nothing was changed")
    rows = compare(current, then or current)
    width = max(len(name) for name, _, _ in rows)
    if then is None:
        typer.echo(f"{'figure':<{width}}  {'would be':>9}")
        for name, now, _ in rows:
            typer.echo(f"{name:<{width}}  {now:>9}")
        return
    typer.echo(f"policy now: {rt.settings.policy_file}; proposed: {proposed}")
    typer.echo(f"{'figure':<{width}}  {'current':>9}  {'proposed':>9}  {'change':>7}")
    for name, now, later in rows:
        typer.echo(f"{name:<{width}}  {now:>9}  {later:>9}  {later - now:>+7}")


@agents_app.command("add")
def agents_add(
    name: Annotated[str, typer.Option(help="the agent's name, as printed on notices")],
    area: Annotated[str, typer.Option(help="the service area they work in")],
    kind: Annotated[str, typer.Option(help="caller (phone calls) or field (home visits)")],
    capacity: Capacity = None,
    languages: Languages = "",
    allow_duplicate: Annotated[
        bool,
        typer.Option(
            "--allow-duplicate", help="add them even if an agent of the area has the same name"
        ),
    ] = False,
) -> None:
    """Add an agent and print their id; a name the area has already is refused."""
    from notifier.audit import service as audit
    from notifier.escalation.agents import add_agent, namesake
    from notifier.escalation.service import InvalidInput

    try:
        with runtime().db.session() as session:
            same = namesake(session, name=name, area=area)
            if same and not allow_duplicate:
                raise typer.BadParameter(
                    f"agent {same.id} ({same.name}, {same.kind}) has that name in "
                    f"{same.area} already; use that id, or give --allow-duplicate for "
                    "another person of the same name",
                    param_hint="--name",
                )
            agent = add_agent(
                session, name=name, area=area, kind=kind, daily_capacity=capacity,
                languages=languages.split(","),
            )  # fmt: skip
            audit.record(
                session, actor=audit.CLI, action="agent.added", target=f"agent {agent.id}",
                detail={"area": agent.area, "kind": agent.kind,
                        "daily_capacity": agent.daily_capacity, "languages": agent.languages},
            )  # fmt: skip
    except InvalidInput as exc:
        raise typer.BadParameter(
            exc.message, param_hint=_OPTION.get(exc.field, f"--{exc.field}")
        ) from None
    typer.echo(agent.id)
    typer.echo(f"agent {agent.id}: {agent.name}, {agent.kind} in {agent.area}", err=True)


@agents_app.command("update")
def agents_update(
    agent_id: Annotated[int, typer.Argument(help="the agent's id")],
    capacity: Capacity = None,
    unlimited: Annotated[
        bool, typer.Option("--unlimited", help="no daily capacity: any number of cases")
    ] = False,
    languages: Annotated[
        str | None, typer.Option(help="the languages they speak, replacing the old list")
    ] = None,
) -> None:
    """Change an agent's daily capacity or languages (audited)."""
    from notifier.audit import service as audit
    from notifier.escalation.agents import update_agent
    from notifier.escalation.service import InvalidInput

    if capacity is not None and unlimited:
        raise typer.BadParameter(
            "give --capacity or --unlimited, not both", param_hint="--capacity"
        )
    try:
        with runtime().db.session() as session:
            agent = update_agent(
                session, agent_id, actor=audit.CLI,
                **({"daily_capacity": capacity} if capacity is not None or unlimited else {}),
                languages=languages.split(",") if languages is not None else None,
            )  # fmt: skip
    except InvalidInput as exc:
        raise typer.BadParameter(
            exc.message, param_hint=_OPTION.get(exc.field, f"--{exc.field}")
        ) from None
    typer.echo(
        f"agent {agent.id}: capacity {agent.daily_capacity or 'unlimited'}, "
        f"languages {','.join(agent.languages) or 'none'}"
    )


@agents_app.command("list")
def agents_list(area: Annotated[str | None, typer.Option(help="only this area")] = None) -> None:
    """List agents with their open cases."""
    from notifier.escalation.agents import list_agents, open_cases_by_agent

    with runtime().db.session() as session:
        load = open_cases_by_agent(session)
        typer.echo("id\tname\tarea\tkind\tstate\topen cases\tcapacity\tlanguages")
        for a in list_agents(session, area=area):
            state = "active" if a.active else "disabled"
            typer.echo(
                f"{a.id}\t{a.name}\t{a.area}\t{a.kind}\t{state}\t{load.get(a.id or 0, 0)}\t"
                f"{a.daily_capacity or 'unlimited'}\t{','.join(a.languages)}"
            )


@agents_app.command("disable")
def agents_disable(agent_id: Annotated[int, typer.Argument(help="the agent's id")]) -> None:
    """Stop giving an agent cases; their open cases go to others of the area (or wait)."""
    from notifier.escalation.agents import disable_agent
    from notifier.escalation.service import InvalidInput

    rt = runtime()
    try:
        with rt.db.session() as session:
            moved, waiting = disable_agent(
                session, agent_id, now=rt.clock(), actor="cli",
                today=rt.policy.business_date(rt.clock()),
            )  # fmt: skip
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint="AGENT_ID") from None
    typer.echo(
        f"agent {agent_id} disabled; {moved} open cases reassigned, {waiting} left unassigned"
    )


def _pull(kind: str, agent: int, fmt: str, output: str) -> None:
    from notifier.audit import service as audit
    from notifier.escalation.downloads import list_file
    from notifier.escalation.models import Agent
    from notifier.exports import tables as exports

    if fmt not in exports.FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(exports.FORMATS)}", param_hint="--format")
    if output == "-" and fmt != "csv" and sys.stdout.isatty():
        raise typer.BadParameter(f"a {fmt} file is binary: give -o FILE", param_hint="--output")
    rt = runtime()
    today = rt.policy.business_date(rt.clock())
    with rt.db.session() as session:
        if session.get(Agent, agent) is None:
            raise typer.BadParameter(f"no agent {agent}", param_hint="--agent")
        download = list_file(
            session,
            agent_id=agent,
            kind=kind,
            fmt=fmt,
            today=today,
            tz=rt.policy.tz,
            actor=audit.CLI,
        )
    if output == "-":
        sys.stdout.buffer.write(download.body)
    else:
        Path(output).write_bytes(download.body)
    typer.echo(f"{download.cases} {kind} cases for agent {agent} on {today}", err=True)


Format = Annotated[str, typer.Option("--format", help="csv, xlsx or ods")]


@calls_app.command("pull")
def calls_pull(agent: AgentId, fmt: Format = "csv", output: Output = "-") -> None:
    """Today's call list of an agent: largest arrears first."""
    _pull("call", agent, fmt, output)


@visits_app.command("pull")
def visits_pull(agent: AgentId, fmt: Format = "csv", output: Output = "-") -> None:
    """Today's visit list of an agent: by area, then address."""
    _pull("visit", agent, fmt, output)


@visits_app.command("notices")
def visits_notices(
    agent: AgentId,
    output: Annotated[str, typer.Option("-o", "--output", help="the PDF file to write")],
    day: Annotated[
        datetime | None,
        typer.Option("--date", formats=["%Y-%m-%d"], help="visit date printed (default: today)"),
    ] = None,
) -> None:
    """The printed notices of an agent's visit list, one a page."""
    from notifier.audit import service as audit
    from notifier.escalation.lists import agent_list
    from notifier.escalation.notices import notices_pdf

    rt = runtime()
    today = rt.policy.business_date(rt.clock())
    visit: date = day.date() if day else today
    with rt.db.session() as session:
        rows = agent_list(session, agent, "visit", today=today)
        if rows:
            audit.record(
                session,
                actor=audit.CLI,
                action="notices.export",
                target=f"agent {agent}",
                detail={"day": visit.isoformat(), "cases": [r.case_id for r in rows]},
            )
    if not rows:
        raise typer.BadParameter(f"agent {agent} has no visit cases today", param_hint="--agent")
    Path(output).write_bytes(notices_pdf(rt.settings, rt.renderer, rows, visit_date=visit))
    typer.echo(f"{len(rows)} notices written to {output}", err=True)
