"""People sign in to the web pages on a real stack: sessions, lockout, CSRF, redirects, the CLI.

Each test drives its own browser (an httpx client with its own cookies that
does not follow redirects) against the stack's API, and makes its users with
``notifier.users.service`` in the stack's database, or with ``notifier users``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlmodel import select

from notifier.audit import service as audit
from notifier.audit.models import AuditEntry
from notifier.db import utcnow
from notifier.escalation.agents import add_agent, disable_agent
from notifier.users import service as users
from notifier.users.models import User, UserSession
from tests.support.stack import Stack
from tests.support.web import PASSWORD, Browser, audit_of, csrf_token, new_user

pytestmark = pytest.mark.parametrize(
    "stack", ["sqlite-filesystem", "postgres-redis"], indirect=True
)

WRONG_ZH = "帳號或密碼錯誤。"
WRONG_EN = "Wrong username or password."


@pytest.fixture
def browser(stack: Stack) -> Iterator[Browser]:
    with Browser(stack.base_url) as b:
        yield b


def stored(stack: Stack, user: User) -> User:
    with stack.db() as session:
        row = session.get(User, user.id)
        assert row is not None
        return row


def set_cookie(response: httpx.Response, name: str) -> str:
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return header


@pytest.mark.parametrize(
    ("role", "home"), [("ops", "/ops"), ("supervisor", "/agent"), ("admin", "/ops")]
)
def test_signing_in_leads_to_the_roles_home(
    stack: Stack, browser: Browser, role: str, home: str
) -> None:
    user = new_user(stack, role)
    assert browser.get("/").headers["location"] == "/sign-in"

    answer = browser.sign_in(user.username.upper(), PASSWORD)  # usernames ignore case

    assert (answer.status_code, answer.headers["location"]) == (303, home)
    assert browser.get("/").headers["location"] == home
    assert browser.get("/sign-in").headers["location"] == home  # already signed in
    assert stored(stack, user).last_login_at is not None
    assert audit_of(stack, user)[-1] == "user.sign_in"


def test_the_session_cookie_is_http_only_and_same_site_lax(stack: Stack, browser: Browser) -> None:
    user = new_user(stack)
    page = browser.get("/sign-in")
    form_cookie = set_cookie(page, "notifier_sign_in").lower()
    assert (
        "httponly" in form_cookie
        and "samesite=lax" in form_cookie
        and "path=/sign-in" in form_cookie
    )

    answer = browser.sign_in(user.username, PASSWORD)

    cookie = set_cookie(answer, "notifier_session").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/;" in cookie + ";"
    assert "secure" not in cookie  # the stack's public URL is http; https would add Secure
    token = browser.client.cookies["notifier_session"]
    with stack.db() as session:
        assert session.get(UserSession, token) is None  # only the token's hash is stored


def test_pages_carry_the_security_headers(stack: Stack, browser: Browser) -> None:
    for path in ("/sign-in", "/static/app.css", "/no-such-page"):
        headers = browser.get(path).headers
        assert headers["content-security-policy"] == (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'"
        ), path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    assert "content-security-policy" not in browser.get("/docs").headers  # Swagger's CDN scripts
    css = browser.get("/static/app.css")
    assert css.status_code == 200 and "@media" in css.text


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(
    stack: Stack, browser: Browser
) -> None:
    user = new_user(stack)

    wrong = browser.sign_in(user.username, "not the password")
    unknown = browser.sign_in(f"nobody-{secrets.token_hex(4)}", PASSWORD)

    for answer in (wrong, unknown):
        assert answer.status_code == 200 and WRONG_ZH in answer.text
        assert "notifier_session" not in answer.headers.get("set-cookie", "")
    assert stored(stack, user).failed_logins == 1
    assert audit_of(stack, user) == ["user.created", "user.sign_in_failed"]

    browser.post("/language", {"lang": "en", "next": "/sign-in"})
    assert WRONG_EN in browser.sign_in(user.username, "not the password").text


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(
    stack: Stack, browser: Browser
) -> None:
    user = new_user(stack)
    for _ in range(5):
        assert WRONG_ZH in browser.sign_in(user.username, "not the password").text

    locked = browser.sign_in(user.username, PASSWORD)

    assert locked.status_code == 200 and WRONG_ZH in locked.text  # no hint that it is locked
    assert "notifier_session" not in browser.client.cookies
    row = stored(stack, user)
    assert row.locked_until is not None and row.locked_until > utcnow() + timedelta(minutes=14)
    assert audit_of(stack, user) == [
        "user.created",
        *["user.sign_in_failed"] * 5,
        "user.locked",
        "user.sign_in_failed",
    ]
    with stack.db() as session:
        (refusal,) = audit.list_entries(
            session, action="user.sign_in_failed", target=users.actor_of(user), limit=1
        ).entries
    assert refusal.detail is not None and refusal.detail["reason"] == "locked"

    with stack.db() as session:  # the quarter of an hour has passed
        row = session.get(User, user.id)
        assert row is not None
        row.locked_until = utcnow() - timedelta(seconds=1)
        session.add(row)
    assert browser.sign_in(user.username, PASSWORD).status_code == 303


def test_signing_out_ends_the_session(stack: Stack, browser: Browser) -> None:
    user = new_user(stack)
    browser.sign_in(user.username, PASSWORD)
    old_cookie = browser.client.cookies["notifier_session"]
    # The 403 page of a CSRF-less POST is a signed-in page: it has the sign-out form.
    token = csrf_token(browser.post("/sign-out", {}).text)

    answer = browser.post("/sign-out", {"csrf_token": token})

    assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in")
    assert "notifier_session" not in browser.client.cookies
    with httpx.Client(base_url=stack.base_url, cookies={"notifier_session": old_cookie}) as thief:
        assert thief.get("/").headers["location"] == "/sign-in"
    assert audit_of(stack, user)[-2:] == ["user.sign_in", "user.sign_out"]


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    stack: Stack, browser: Browser
) -> None:
    user = new_user(stack, language="en")
    browser.sign_in(user.username, PASSWORD)

    for form in ({}, {"csrf_token": "forged"}):
        refused = browser.post("/sign-out", form)
        assert refused.status_code == 403
        assert "This form was out of date, so nothing was done." in refused.text
        assert user.display_name in refused.text and "Sign out" in refused.text
    assert browser.get("/").headers["location"] == "/ops"  # still signed in
    assert "user.sign_out" not in audit_of(stack, user)

    with Browser(stack.base_url) as stranger:  # a form posted from another site, with no cookie
        blind = stranger.post(
            "/sign-in", {"username": user.username, "password": PASSWORD, "csrf_token": "x"}
        )
        assert blind.status_code == 403 and "notifier_session" not in stranger.client.cookies
    assert audit_of(stack, user).count("user.sign_in") == 1


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\t/evil.example/",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_next_is_followed_only_to_a_page_of_this_site(
    stack: Stack, browser: Browser, target: str
) -> None:
    user = new_user(stack)
    answer = browser.sign_in(user.username, PASSWORD, next=target)
    assert answer.headers["location"] == "/ops"


def test_next_leads_back_to_the_page_asked_for(stack: Stack, browser: Browser) -> None:
    user = new_user(stack)
    page = browser.get("/sign-in", params={"next": "/ops/deliveries?status=failed"})
    assert 'name="next" value="/ops/deliveries?status=failed"' in page.text
    answer = browser.sign_in(user.username, PASSWORD, next="/ops/deliveries?status=failed")
    assert answer.headers["location"] == "/ops/deliveries?status=failed"


def test_an_agent_user_must_be_an_active_agent(stack: Stack, browser: Browser) -> None:
    with pytest.raises(users.InvalidInput, match="needs the agent"):
        new_user(stack, "agent")
    with stack.db() as session:
        agent = add_agent(
            session, name="林建宏", area=f"area-{secrets.token_hex(3)}", kind="caller"
        )
        gone = add_agent(session, name="陳志明", area=agent.area, kind="caller")
        assert gone.id is not None
        disable_agent(session, gone.id, now=utcnow(), actor="test")
    with pytest.raises(users.InvalidInput, match=f"no active agent {gone.id}"):
        new_user(stack, "agent", agent_id=gone.id)

    user = new_user(stack, "agent", agent_id=agent.id, display_name="林建宏")

    assert browser.sign_in(user.username, PASSWORD).headers["location"] == "/agent"


def test_an_idle_session_ends(stack: Stack, browser: Browser) -> None:
    user = new_user(stack)
    browser.sign_in(user.username, PASSWORD)
    with stack.db() as session:
        (row,) = session.exec(select(UserSession).where(UserSession.user_id == user.id))
        row.expires_at = utcnow() - timedelta(seconds=1)  # 8 hours without a request
        session.add(row)
    assert browser.get("/").headers["location"] == "/sign-in"
    with stack.db() as session:
        assert session.exec(select(UserSession).where(UserSession.user_id == user.id)).all() == []


def test_the_password_never_reaches_the_logs(
    stack: Stack, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    user = new_user(stack)
    typo = f"{PASSWORD}-typo-{secrets.token_hex(4)}"
    caplog.set_level(logging.DEBUG)

    browser.sign_in(user.username, typo)
    browser.sign_in(typo, typo)  # a password typed into the username field
    browser.sign_in(user.username, PASSWORD)

    assert any("sign-in refused" in r.getMessage() for r in caplog.records), "nothing captured"
    assert typo not in caplog.text and PASSWORD not in caplog.text
    with stack.db() as session:
        entries = session.exec(select(AuditEntry)).all()
    assert not [e for e in entries if typo in str(e.detail) or PASSWORD in str(e.detail)]
