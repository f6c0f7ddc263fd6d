"""Users of the web pages and their server-side sessions."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["SESSION_STAGES", "SignInThrottle", "User", "UserSession"]

SESSION_STAGES = ("full", "totp", "enrol")
"""A session's stage: signed in; password right, TOTP code owed; password right, TOTP to enrol."""


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=64)
    """Stored lower-cased, so that uniqueness and sign-in ignore case."""
    display_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    """Empty for a directory user: no password signs them in."""
    role: str = Field(max_length=16)
    """``ops``, ``agent``, ``supervisor`` or ``admin``, as API key roles."""
    agent_id: int | None = Field(default=None, foreign_key="agents.id")
    """The agent this user is; required for the ``agent`` role."""
    language: str = Field(default="zh-TW", max_length=8)
    active: bool = True
    failed_logins: int = 0
    """Failed sign-ins in a row since the last success or lock."""
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    directory_subject: str | None = Field(default=None, unique=True, max_length=255)
    """``<issuer> <sub>`` of a user who signs in through the directory; None: a local account."""
    totp_secret: str | None = Field(default=None, max_length=64)
    """The TOTP key (base32); shown once at enrolment, never again, never logged."""
    totp_confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When a first code proved the key; until then the key is an enrolment in progress."""
    totp_last_step: int | None = None
    """The 30-second step of the last code accepted: a code is good once."""


class UserSession(SQLModel, table=True):
    """A signed-in browser; the cookie holds a token whose SHA-256 is the id."""

    __tablename__ = "user_sessions"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    """``last_seen_at`` plus the idle timeout; pushed forward as the user works."""
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    stage: str = Field(default="full", max_length=8)
    """``SESSION_STAGES``: only a ``full`` session opens pages."""


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins from one client address in its current window."""

    __tablename__ = "sign_in_throttle"

    client: str = Field(primary_key=True, max_length=64)
    window_start: datetime = Field(sa_type=UTCDateTime)
    failures: int = 0
