"""A browser for the web pages, and users to sign in with, on a running stack.

Supervisors and admins need a TOTP key (``notifier.users.totp``): ``new_user``
enrols one for them and remembers it here, and ``Browser.sign_in`` answers the
code page with a fresh code of that key, as the person's phone would.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
import pyotp
from sqlmodel import col, select

from notifier.audit.models import AuditEntry
from notifier.users import service as users
from notifier.users import totp
from notifier.users.models import User
from tests.support.stack import Stack

PASSWORD = "correct horse battery"


@dataclass
class Authenticator:
    """A phone's authenticator app: the key, and the last step whose code it gave."""

    secret: str
    last_step: int

    def code_of_last_step(self) -> str:
        self.last_step += 1
        return pyotp.TOTP(self.secret).at(self.last_step * totp.STEP_SECONDS)

    def code(self) -> str:
        """A code the service has not seen yet: this step's, else the next one's.

        The service takes a code of one step either side of its own, once; a
        third sign-in inside one step waits for the step to turn, as its user would.
        """
        now_step = int(time.time()) // totp.STEP_SECONDS
        step = max(now_step, self.last_step + 1)
        if step > now_step + 1:
            time.sleep((step - 1) * totp.STEP_SECONDS - time.time() + 0.5)
        self.last_step = step
        return pyotp.TOTP(self.secret).at(step * totp.STEP_SECONDS)


AUTHENTICATORS: dict[str, Authenticator] = {}
"""Username → the authenticator enrolled by ``new_user`` or ``enrol``."""


class Browser:
    """One browser: its own cookie jar, redirects shown rather than followed."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.client.close()

    def sign_in(self, username: str, password: str, *, next: str = "") -> httpx.Response:
        """Open the sign-in page and send its form."""
        page = self.client.get("/sign-in")
        assert page.status_code == 200, page.text
        form = {"username": username, "password": password, "next": next}
        answer = self.client.post("/sign-in", data={**form, "csrf_token": csrf_token(page.text)})
        phone = AUTHENTICATORS.get(username.strip().lower())
        if answer.status_code == 303 and answer.headers["location"].startswith("/sign-in/totp"):
            assert phone is not None, f"{username} has a TOTP key the test does not know"
            return self.give_code(answer.headers["location"], phone.code())
        return answer

    def give_code(self, page_url: str, code: str) -> httpx.Response:
        """Answer the TOTP page at ``page_url`` with ``code``."""
        page = self.client.get(page_url)
        assert page.status_code == 200, page.text
        form = {
            "code": code,
            "csrf_token": csrf_token(page.text),
            "next": httpx.URL(page_url).params.get("next", ""),
        }
        return self.client.post("/sign-in/totp", data=form)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return self.client.post(path, data=data)


def csrf_token(html: str) -> str:
    """The token of the page's (first) form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, f"no csrf_token in the page:\n{html}"
    return found.group(1)


def new_user(stack: Stack, role: str = "ops", *, enrol_totp: bool | None = None, **kw: Any) -> User:
    """A new user with a unique name and ``PASSWORD``; a TOTP key when the role needs one."""
    with stack.db() as session:
        user = users.create_user(
            session,
            username=f"{role}-{secrets.token_hex(4)}",
            password=PASSWORD,
            role=role,
            actor="test",
            **kw,
        )
    if enrol_totp if enrol_totp is not None else role in users.TOTP_REQUIRED_ROLES:
        enrol(stack, user)
    return user


def enrol(stack: Stack, user: User) -> Authenticator:
    """Enrol a TOTP key for ``user`` as the enrolment page would, and keep the phone."""
    with stack.db() as session:
        row = session.get(User, user.id)
        assert row is not None
        secret = totp.begin_enrolment(session, row)
        # The code of the step just gone, which the service still takes: it
        # leaves this step and the next to the sign-ins that follow.
        phone = Authenticator(secret=secret, last_step=int(time.time()) // totp.STEP_SECONDS - 2)
        assert totp.confirm(session, row, phone.code_of_last_step(), now=datetime.now(UTC))
    AUTHENTICATORS[user.username] = phone
    return phone


def audit_of(stack: Stack, user: User) -> list[str]:
    """The actions recorded by or about ``user``, oldest first."""
    name = users.actor_of(user)
    with stack.db() as session:
        rows = session.exec(
            select(AuditEntry)
            .where((AuditEntry.target == name) | (AuditEntry.actor == name))
            .order_by(col(AuditEntry.id))
        )
        return [row.action for row in rows]
