"""Users: add, list, disable, change passwords; sign in and out.

Passwords are hashed with argon2id (argon2-cffi's ``PasswordHasher`` and its
defaults); a hash made with older parameters is replaced at the next
successful sign-in. A sign-in fails the same way, and costs the same hashing,
whether the username is unknown, the password wrong, or the account disabled
or locked, so that the answer tells nothing about which accounts exist; the
reason goes to the log and the audit trail. ``max_failures`` wrong passwords
in a row lock the account for ``lockout``; an admin's new password unlocks it.
Besides, one client address that fails too often waits (``throttle``).

A new password must pass :mod:`notifier.users.passwords`. A password
account with a confirmed TOTP key gives its code after the password (the
session starts at stage ``totp``); a supervisor or admin without one is sent
to enrol first (stage ``enrol``): see :mod:`notifier.users.totp`. A directory
user (``directory_subject`` set) has no password and never signs in with one.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, col, select

from notifier.audit import service as audit
from notifier.auth.keys import ROLES as KEY_ROLES
from notifier.escalation.models import Agent
from notifier.users import passwords, sessions, throttle
from notifier.users.models import User, UserSession

__all__ = [
    "LANGUAGES",
    "MIN_PASSWORD_LENGTH",
    "ROLES",
    "TOTP_REQUIRED_ROLES",
    "InvalidInput",
    "SignInRules",
    "SignedIn",
    "Throttled",
    "actor_of",
    "client_wait",
    "create_user",
    "disable_user",
    "get_user",
    "list_users",
    "refuse_client",
    "set_password",
    "sign_in",
    "sign_out",
    "start_session",
]

ROLES: tuple[str, ...] = tuple(role for role in KEY_ROLES if role != "producer")
"""A person's roles: the API key roles but ``producer`` (a program)."""
LANGUAGES: tuple[str, ...] = ("zh-TW", "en")
MIN_PASSWORD_LENGTH = passwords.MIN_LENGTH
TOTP_REQUIRED_ROLES: frozenset[str] = frozenset({"supervisor", "admin"})
"""Password accounts of these roles must have a TOTP key before they open any page."""
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")
_hasher = PasswordHasher()
log = logging.getLogger(__name__)


class InvalidInput(ValueError):
    """Bad input about a user, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Throttled(Exception):
    """This client failed too many sign-ins; it may try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignInRules:
    """The settings a sign-in is checked against (from ``notifier.settings``)."""

    idle: timedelta
    max_age: timedelta
    max_failures: int
    lockout: timedelta
    throttle_failures: int
    throttle_window: timedelta


@dataclass(frozen=True)
class SignedIn:
    user: User
    token: str
    """The session cookie's value; only its hash is stored."""
    session: UserSession

    @property
    def stage(self) -> str:
        """``full``: signed in; ``totp``: a code is owed; ``enrol``: a TOTP key must be set up."""
        return self.session.stage


def actor_of(user: User) -> str:
    """How the audit trail names this user: ``user 3 (alice)``."""
    return audit.actor_name("user", user.id, user.username)


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    actor: str,
    display_name: str | None = None,
    agent_id: int | None = None,
    language: str = "zh-TW",
) -> User:
    """A new active user; ``agent`` users must be an active agent."""
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise InvalidInput(
            "username", "use 2 to 64 letters, digits or . _ @ -, starting with a letter or digit"
        )
    if session.exec(select(User.id).where(User.username == name)).first() is not None:
        raise InvalidInput("username", f"{name!r} is taken")
    if role not in ROLES:
        raise InvalidInput("role", f"{role!r} is not one of {', '.join(ROLES)}")
    if role == "agent" and agent_id is None:
        raise InvalidInput("agent", "an agent user needs the agent they are (notifier agents list)")
    if agent_id is not None:
        agent = session.get(Agent, agent_id)
        if agent is None or not agent.active:
            raise InvalidInput("agent", f"no active agent {agent_id} (see notifier agents list)")
    if language not in LANGUAGES:
        raise InvalidInput("language", f"{language!r} is not one of {', '.join(LANGUAGES)}")
    shown = (display_name or "").strip() or name
    if len(shown) > 200:
        raise InvalidInput("name", "a display name has at most 200 characters")
    user = User(
        username=name,
        display_name=shown,
        password_hash=_hash(password, user_inputs=(name, shown)),
        role=role,
        agent_id=agent_id,
        language=language,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.created",
        target=actor_of(user),
        detail={"role": role, "agent_id": agent_id},
    )
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.id))))


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id, with_for_update=True)
    if user is None:
        raise InvalidInput("user_id", f"no user {user_id} (see notifier users list)")
    return user


def disable_user(session: Session, user_id: int, *, actor: str) -> User:
    """The user may no longer sign in; their sessions end now."""
    user = get_user(session, user_id)
    if user.active:
        user.active = False
        session.add(user)
        sessions.end_all(session, user_id)
        audit.record(session, actor=actor, action="user.disabled", target=actor_of(user))
    return user


def set_password(session: Session, user_id: int, password: str, *, actor: str) -> User:
    """A new password; it ends the user's sessions and lifts a lock."""
    user = get_user(session, user_id)
    if user.directory_subject is not None:
        raise InvalidInput("password", "a directory user signs in through the directory")
    user.password_hash = _hash(password, user_inputs=(user.username, user.display_name))
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    sessions.end_all(session, user_id)
    audit.record(session, actor=actor, action="user.password_changed", target=actor_of(user))
    return user


def sign_in(
    session: Session,
    username: str,
    password: str,
    *,
    now: datetime,
    rules: SignInRules,
    client: str | None = None,
) -> SignedIn | None:
    """A new session if the password is right and the account may sign in, else None.

    Raises ``Throttled``, before checking anything, when ``client`` failed too often.
    """
    wait = client_wait(session, client, now=now, rules=rules)
    if wait is not None:
        log.warning("sign-in refused: client throttled for %d s", wait)
        raise Throttled(wait)
    user = session.exec(
        select(User).where(User.username == username.strip().lower()).with_for_update()
    ).first()
    # Exactly one verification on every path: the time taken names no reason.
    stored = user.password_hash if user and user.password_hash else _dummy_hash()
    matches = _verify(stored, password) and user is not None and bool(user.password_hash)
    where: dict[str, Any] = {"client": client} if client else {}
    if user is None:
        _refuse(session, None, "unknown username", where, client=client, now=now, rules=rules)
        return None
    if not user.active:
        _refuse(session, user, "disabled", where, client=client, now=now, rules=rules)
        return None
    if user.directory_subject is not None:
        _refuse(session, user, "directory user", where, client=client, now=now, rules=rules)
        return None
    if user.locked_until is not None and user.locked_until > now:
        detail = {**where, "locked_until": user.locked_until.isoformat()}
        _refuse(session, user, "locked", detail, client=client, now=now, rules=rules)
        return None
    if not matches:
        user.failed_logins += 1
        detail = {**where, "failures": user.failed_logins}
        _refuse(session, user, "wrong password", detail, client=client, now=now, rules=rules)
        if user.failed_logins >= rules.max_failures:
            _lock(session, user, until=now + rules.lockout)
        session.add(user)
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    if user.totp_confirmed_at is not None:
        stage = "totp"
    elif user.role in TOTP_REQUIRED_ROLES:
        stage = "enrol"
    else:
        return start_session(session, user, now=now, rules=rules, client=client, method="password")
    token, row = sessions.start(session, user, now=now, idle=rules.idle, stage=stage)
    audit.record(
        session,
        actor=actor_of(user),
        action="user.password_accepted",
        detail={**where, "next": stage},
    )
    return SignedIn(user=user, token=token, session=row)


def start_session(
    session: Session,
    user: User,
    *,
    now: datetime,
    rules: SignInRules,
    client: str | None,
    method: str,
) -> SignedIn:
    """A ``full`` session for ``user``, who has proved who they are by ``method``."""
    user.last_login_at = now
    session.add(user)
    token, row = sessions.start(session, user, now=now, idle=rules.idle)
    detail: dict[str, Any] = {"method": method}
    if client:
        detail["client"] = client
    audit.record(session, actor=actor_of(user), action="user.sign_in", detail=detail)
    log.info("%s signed in (%s)", actor_of(user), method)
    return SignedIn(user=user, token=token, session=row)


def client_wait(
    session: Session, client: str | None, *, now: datetime, rules: SignInRules
) -> int | None:
    """Seconds ``client`` must wait before its next sign-in step, or None (no address: None)."""
    if client is None:
        return None
    return throttle.retry_after(
        session, client, now=now, limit=rules.throttle_failures, window=rules.throttle_window
    )


def refuse_client(
    session: Session, client: str | None, *, now: datetime, rules: SignInRules
) -> None:
    """Count one failed sign-in step (a wrong TOTP code, say) against ``client``."""
    if client is not None:
        throttle.record_failure(session, client, now=now, window=rules.throttle_window)


def sign_out(session: Session, token: str) -> User | None:
    """End the session behind the cookie's token; the user it was, if any."""
    row = sessions.end(session, token)
    user = session.get(User, row.user_id) if row else None
    if user is not None:
        audit.record(session, actor=actor_of(user), action="user.sign_out")
    return user


def _refuse(
    session: Session,
    user: User | None,
    reason: str,
    detail: dict[str, Any],
    *,
    client: str | None,
    now: datetime,
    rules: SignInRules,
) -> None:
    refuse_client(session, client, now=now, rules=rules)
    who = actor_of(user) if user else "an unknown username"
    log.warning("sign-in refused for %s: %s", who, reason)
    audit.record(
        session,
        actor=audit.WEB,
        action="user.sign_in_failed",
        target=actor_of(user) if user else None,
        detail={"reason": reason, **detail},
    )


def _lock(session: Session, user: User, *, until: datetime) -> None:
    failures = user.failed_logins
    user.failed_logins = 0  # the next lock takes as many failures again
    user.locked_until = until
    log.warning("%s locked until %s after %d failed sign-ins", actor_of(user), until, failures)
    audit.record(
        session,
        actor=audit.WEB,
        action="user.locked",
        target=actor_of(user),
        detail={"until": until.isoformat(), "failures": failures},
    )


def _hash(password: str, *, user_inputs: tuple[str, ...]) -> str:
    problem = passwords.problem(password, user_inputs=user_inputs)
    if problem is not None:
        raise InvalidInput("password", problem)
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError) as exc:
        log.error("a stored password hash could not be checked: %s", type(exc).__name__)
        return False


@cache
def _dummy_hash() -> str:
    """A hash no password matches, verified for unknown usernames to take the same time."""
    return _hasher.hash(secrets.token_urlsafe(32))
