"""A browser for the web pages, and users to sign in with, on a running stack."""

from __future__ import annotations

import re
import secrets
from types import TracebackType
from typing import Any

import httpx
from sqlmodel import col, select

from notifier.audit.models import AuditEntry
from notifier.users import service as users
from notifier.users.models import User
from tests.support.stack import Stack

PASSWORD = "correct horse battery"


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
        return self.client.post("/sign-in", data={**form, "csrf_token": csrf_token(page.text)})

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return self.client.post(path, data=data)


def csrf_token(html: str) -> str:
    """The token of the page's (first) form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, f"no csrf_token in the page:\n{html}"
    return found.group(1)


def new_user(stack: Stack, role: str = "ops", **kw: Any) -> User:
    """A new user with a unique name and ``PASSWORD``."""
    with stack.db() as session:
        return users.create_user(
            session,
            username=f"{role}-{secrets.token_hex(4)}",
            password=PASSWORD,
            role=role,
            actor="test",
            **kw,
        )


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
