"""The TOTP second factor of password accounts (RFC 6238 with pyotp: SHA-1, 6 digits, 30 s).

Enrolment makes a new key and shows it once, as an ``otpauth://`` URI for an
authenticator app; the key counts only when a first code from the app
confirms it. At sign-in a code is good in its own 30-second step or one step
either side (clocks drift), and only once: the step of the last accepted code
is kept, and a code of that step or an earlier one is refused, so a code seen
over a shoulder cannot be replayed. An admin's ``reset`` (``notifier users
reset-totp``) removes the key and ends the user's sessions; a supervisor or
admin then enrols again at the next sign-in. The key is never logged nor
written to the audit trail.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pyotp
from sqlmodel import Session

from notifier.audit import service as audit
from notifier.users import sessions
from notifier.users.models import User

__all__ = [
    "ISSUER",
    "STEP_SECONDS",
    "begin_enrolment",
    "confirm",
    "provisioning_uri",
    "reset",
    "verify",
]

STEP_SECONDS = 30
ISSUER = "notifier"
"""The name an authenticator app shows beside the account."""
_DRIFT_STEPS = 1
log = logging.getLogger(__name__)


def begin_enrolment(session: Session, user: User) -> str:
    """A new, unconfirmed key for ``user`` (replacing an unconfirmed one); returns it."""
    if user.totp_confirmed_at is not None:
        raise ValueError("this user has a TOTP key already; an admin resets it first")
    user.totp_secret = pyotp.random_base32()
    user.totp_last_step = None
    session.add(user)
    session.flush()
    return user.totp_secret


def provisioning_uri(user: User, secret: str) -> str:
    """The ``otpauth://totp/…`` URI an authenticator app reads (typed in or from a QR code)."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
        name=user.username, issuer_name=ISSUER
    )


def confirm(session: Session, user: User, code: str, *, now: datetime) -> bool:
    """Whether ``code`` proves the enrolment in progress; if so the key counts from now."""
    if user.totp_secret is None or user.totp_confirmed_at is not None:
        return False
    if not _accept(user, code, now=now):
        return False
    user.totp_confirmed_at = now
    session.add(user)
    audit.record(session, actor=_actor(user), action="user.totp_enrolled")
    log.info("%s enrolled a TOTP key", _actor(user))
    return True


def verify(session: Session, user: User, code: str, *, now: datetime) -> bool:
    """Whether ``code`` is a fresh code of ``user``'s confirmed key (never one used before)."""
    if user.totp_secret is None or user.totp_confirmed_at is None:
        return False
    ok = _accept(user, code, now=now)
    session.add(user)
    return ok


def reset(session: Session, user: User, *, actor: str) -> None:
    """Remove ``user``'s key and end their sessions (a lost phone); audited."""
    assert user.id is not None
    had = user.totp_confirmed_at is not None
    user.totp_secret = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    session.add(user)
    sessions.end_all(session, user.id)
    audit.record(
        session,
        actor=actor,
        action="user.totp_reset",
        target=_actor(user),
        detail={"had_key": had},
    )


def _accept(user: User, code: str, *, now: datetime) -> bool:
    """Check ``code`` against the key around ``now``; on success remember its step."""
    assert user.totp_secret is not None
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return False
    totp = pyotp.TOTP(user.totp_secret, interval=STEP_SECONDS)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - _DRIFT_STEPS, current + _DRIFT_STEPS + 1):
        if user.totp_last_step is not None and step <= user.totp_last_step:
            continue  # used already, or older than a code that was
        if pyotp.utils.strings_equal(totp.at(step * STEP_SECONDS), code):
            user.totp_last_step = step
            return True
    return False


def _actor(user: User) -> str:
    return audit.actor_name("user", user.id, user.username)
