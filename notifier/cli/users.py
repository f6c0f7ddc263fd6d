"""``notifier users add|list|disable|passwd|reset-totp``: the people who sign in to the web pages."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from notifier.cli.common import database

if TYPE_CHECKING:
    from sqlmodel import Session

__all__ = ["users_app"]

users_app = typer.Typer(
    help="People who sign in to the web pages: add, list, disable, passwd, reset-totp.",
    no_args_is_help=True,
)

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="read the password from the first line of stdin (scripts)"
    ),
]
UserId = Annotated[int, typer.Argument(help="the user's id (notifier users list)")]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _hint(field: str) -> str:
    """The command-line name of a field a service error names."""
    return {"password": "password", "user_id": "USER_ID"}.get(field, f"--{field}")


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Option(help="what they type to sign in (any case)")],
    role: Annotated[str, typer.Option(help="ops | agent | supervisor | admin")],
    agent: Annotated[
        int | None, typer.Option(help="their agent id; needed for --role agent")
    ] = None,
    name: Annotated[str, typer.Option(help="the name the pages show (default: username)")] = "",
    language: Annotated[str, typer.Option(help="zh-TW or en")] = "zh-TW",
    password_stdin: PasswordStdin = False,
    allow_duplicate: Annotated[
        bool,
        typer.Option(
            "--allow-duplicate",
            help="add them even if a user of the same area has the same name",
        ),
    ] = False,
) -> None:
    """Add a user; the password is asked for twice, or read from stdin.

    A name (--name, else the username) that a user of the same area has already is
    refused: the area of their agent, or none for users who are no agent.
    """
    from notifier.audit.service import CLI
    from notifier.users.service import InvalidInput, create_user

    db = database()  # before the password prompt: no typing it for a database that is not there
    if not allow_duplicate:
        with db.session() as session:
            _refuse_duplicate(session, (name or username).strip(), agent)
    password = _password(password_stdin)
    try:
        with db.session() as session:
            user = create_user(
                session,
                username=username,
                password=password,
                role=role,
                display_name=name,
                agent_id=agent,
                language=language,
                actor=CLI,
            )
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint=_hint(exc.field)) from None
    typer.echo(user.id)
    typer.echo(f"user {user.id}: {user.username} ({user.role}) added", err=True)


def _refuse_duplicate(session: Session, name: str, agent_id: int | None) -> None:
    """Refuse ``name`` if an active user of the same area has it (the area of their agent)."""
    from notifier.escalation.models import Agent
    from notifier.users.service import list_users

    def area(of: int | None) -> str | None:
        agent = session.get(Agent, of) if of is not None else None
        return agent.area if agent is not None else None

    mine = area(agent_id)
    for user in list_users(session):
        same = user.display_name.casefold() == name.casefold()
        if user.active and same and area(user.agent_id) == mine:
            where = f"in {mine}" if mine else "among the users who are no agent"
            raise typer.BadParameter(
                f"user {user.id} ({user.username}, {user.display_name}) has that name {where} "
                "already; give --allow-duplicate for another person of the same name",
                param_hint="--name",
            )


@users_app.command("list")
def users_list() -> None:
    """List users (never their passwords)."""
    from notifier.db import utcnow
    from notifier.users.service import list_users

    now = utcnow()
    with database().session() as session:
        typer.echo("id\tusername\tname\trole\tagent\tlanguage\tstate\tlast sign-in\tsigns in with")
        for u in list_users(session):
            state = "disabled" if not u.active else "active"
            if u.active and u.locked_until is not None and u.locked_until > now:
                state = f"locked until {u.locked_until:%Y-%m-%d %H:%M} UTC"
            last = f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
            agent = u.agent_id if u.agent_id is not None else "-"
            how = (
                "directory"
                if u.directory_subject is not None
                else "password+totp"
                if u.totp_confirmed_at is not None
                else "password"
            )
            typer.echo(
                f"{u.id}\t{u.username}\t{u.display_name}\t{u.role}\t{agent}\t{u.language}\t{state}\t{last}\t{how}"
            )


@users_app.command("disable")
def users_disable(user_id: UserId) -> None:
    """Stop a user signing in; their open sessions end at once."""
    from notifier.audit.service import CLI
    from notifier.users.service import InvalidInput, disable_user

    try:
        with database().session() as session:
            user = disable_user(session, user_id, actor=CLI)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint=_hint(exc.field)) from None
    typer.echo(f"user {user.id} ({user.username}) disabled; their sessions have ended")


@users_app.command("passwd")
def users_passwd(user_id: UserId, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password; it ends their sessions and lifts a lock."""
    from notifier.audit.service import CLI
    from notifier.users.service import InvalidInput, set_password

    password = _password(password_stdin)
    try:
        with database().session() as session:
            user = set_password(session, user_id, password, actor=CLI)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint=_hint(exc.field)) from None
    typer.echo(f"user {user.id} ({user.username}): password changed; their sessions have ended")


@users_app.command("reset-totp")
def users_reset_totp(user_id: UserId) -> None:
    """Remove a user's TOTP key (a lost phone); their sessions end, and they enrol again."""
    from notifier.audit.service import CLI
    from notifier.users import totp
    from notifier.users.service import InvalidInput, get_user

    try:
        with database().session() as session:
            user = get_user(session, user_id)
            totp.reset(session, user, actor=CLI)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint=_hint(exc.field)) from None
    typer.echo(
        f"user {user.id} ({user.username}): TOTP key removed; their sessions have ended"
        + (
            "; they set up a new one at their next sign-in"
            if user.role in ("supervisor", "admin")
            else ""
        )
    )
