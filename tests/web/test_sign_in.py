"""People sign in to the web pages on a real stack: sessions, lockout, CSRF, redirects, the CLI.

Each test drives its own browser (an httpx client with its own cookies that
does not follow redirects) against the stack's API, and makes its users with
``notifier.users.service`` in the stack's database, or with ``notifier users``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pyotp
import pytest
from sqlmodel import select

from notifier.audit import service as audit
from notifier.audit.models import AuditEntry
from notifier.db import utcnow
from notifier.escalation.agents import add_agent, disable_agent
from notifier.users import service as users
from notifier.users import totp
from notifier.users.models import User, UserSession
from tests.support.stack import Stack
from tests.support.web import AUTHENTICATORS, PASSWORD, Browser, audit_of, csrf_token, new_user

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
    # /docs has its own policy (inline styles for Swagger UI and ReDoc), still this site only.
    assert "script-src 'self';" in browser.get("/docs").headers["content-security-policy"]
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


def test_an_open_session_ends_at_its_absolute_lifetime(stack: Stack, browser: Browser) -> None:
    user = new_user(stack)
    browser.sign_in(user.username, PASSWORD)
    assert browser.get("/").headers["location"] == "/ops"
    with stack.db() as session:
        (row,) = session.exec(select(UserSession).where(UserSession.user_id == user.id))
        # Busy all day: seen a moment ago, but begun 12 hours ago.
        row.created_at = utcnow() - timedelta(hours=stack.settings.session_max_hours)
        session.add(row)
    assert browser.get("/").headers["location"] == "/sign-in"


def totp_secret_on(page: str) -> str:
    found = re.search(r"otpauth://totp/[^<\s]*secret=([A-Z2-7]+)", page)
    assert found, f"no otpauth URI on the page:\n{page}"
    return found.group(1)


def test_a_supervisor_without_a_key_enrols_before_any_page_opens(
    stack: Stack, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = new_user(stack, "supervisor", enrol_totp=False)
    browser.post("/language", {"lang": "en", "next": "/sign-in"})

    answer = browser.sign_in(user.username, PASSWORD, next="/agent")

    assert answer.headers["location"] == "/sign-in/enrol?next=%2Fagent"
    assert browser.get("/agent").headers["location"].startswith("/sign-in")  # no page yet
    page = browser.get(answer.headers["location"])
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    first = totp_secret_on(page.text)
    token = csrf_token(page.text)
    wrong = browser.post(
        "/sign-in/enrol", {"code": "000000", "csrf_token": token, "next": "/agent"}
    )
    assert wrong.headers["location"].startswith("/sign-in/enrol")
    again = browser.get(wrong.headers["location"])
    assert "did not match" in again.text
    second = totp_secret_on(again.text)
    assert second != first  # a wrong code gets a new key, not a second look at the old one

    done = browser.post(
        "/sign-in/enrol",
        {"code": pyotp.TOTP(second).now(), "csrf_token": csrf_token(again.text), "next": "/agent"},
    )

    assert (done.status_code, done.headers["location"]) == (303, "/agent")
    assert browser.get("/agent").status_code == 200
    actions = audit_of(stack, user)
    assert actions.index("user.password_accepted") < actions.index("user.totp_enrolled")
    assert actions.index("user.totp_enrolled") < actions.index("user.sign_in")
    with stack.db() as session:
        entries = session.exec(select(AuditEntry)).all()
    assert not [e for e in entries if second in str(e.detail) or first in str(e.detail)]
    assert second not in caplog.text and first not in caplog.text


def test_a_totp_code_signs_in_once_and_a_replay_is_refused(stack: Stack) -> None:
    user = new_user(stack, "ops", enrol_totp=True)
    phone = AUTHENTICATORS[user.username]
    code = phone.code()
    with Browser(stack.base_url) as first, Browser(stack.base_url) as second:
        second.post("/language", {"lang": "en", "next": "/sign-in"})
        step = first  # the code page answered by hand, with the code kept for the replay
        answer = step.client.post(
            "/sign-in",
            data={
                "username": user.username,
                "password": PASSWORD,
                "csrf_token": csrf_token(step.get("/sign-in").text),
            },
        )
        assert answer.headers["location"] == "/sign-in/totp"
        assert step.give_code("/sign-in/totp", code).headers["location"] == "/ops"
        page = second.get("/sign-in")
        answer = second.client.post(
            "/sign-in",
            data={
                "username": user.username,
                "password": PASSWORD,
                "csrf_token": csrf_token(page.text),
            },
        )
        assert answer.headers["location"] == "/sign-in/totp"

        replayed = second.give_code("/sign-in/totp", code)

        assert replayed.status_code == 200 and "used already" in replayed.text
        assert "notifier_session" in second.client.cookies  # still only the pending session
        assert second.get("/ops").headers["location"].startswith("/sign-in")
        assert second.give_code("/sign-in/totp", phone.code()).headers["location"] == "/ops"
    actions = audit_of(stack, user)
    assert actions.count("user.sign_in") == 2 and actions.count("user.sign_in_failed") == 1


@pytest.fixture
def throttled_stack(stack: Stack) -> Iterator[Stack]:
    """The stack with the default throttle (20 failures in 10 minutes), behind a trusted proxy."""
    settings = stack.runtime.settings
    stack.runtime.settings = settings.model_copy(
        update={"login_throttle_failures": 20, "trust_forwarded_headers": True}
    )
    yield stack
    stack.runtime.settings = settings


def test_a_client_failing_twenty_times_waits_and_others_do_not(
    throttled_stack: Stack, browser: Browser
) -> None:
    stack = throttled_stack
    user = new_user(stack)
    stranger = f"203.0.113.{secrets.randbelow(250) + 1}"
    proxy = {"X-Forwarded-For": f"10.9.9.9, {stranger}"}  # what the client wrote, then our proxy
    page = browser.get("/sign-in")
    form = {"username": user.username, "csrf_token": csrf_token(page.text)}
    for n in range(20):
        name = user.username if n < 3 else f"nobody-{n}"  # the account itself stays unlocked
        answer = browser.client.post(
            "/sign-in", data={**form, "username": name, "password": "wrong"}, headers=proxy
        )
        assert answer.status_code == 200, n

    held = browser.client.post("/sign-in", data={**form, "password": PASSWORD}, headers=proxy)

    assert held.status_code == 429 and 0 < int(held.headers["retry-after"]) <= 600
    assert "Too many failed sign-ins" in held.text or "登入失敗次數過多" in held.text
    assert "notifier_session" not in browser.client.cookies
    # The same account from another address signs in: the stranger locked nobody out.
    other = {"X-Forwarded-For": f"{stranger}, 198.51.100.{secrets.randbelow(250) + 1}"}
    ok = browser.client.post("/sign-in", data={**form, "password": PASSWORD}, headers=other)
    assert ok.status_code == 303
    with stack.db() as session:
        (refusal,) = audit.list_entries(
            session, action="user.sign_in_failed", target=users.actor_of(user), limit=1
        ).entries
    assert refusal.detail is not None and refusal.detail["client"] == stranger


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    stack: Stack, browser: Browser
) -> None:
    assert not stack.settings.trust_forwarded_headers
    user = new_user(stack)
    page = browser.get("/sign-in")
    browser.client.post(
        "/sign-in",
        data={"username": user.username, "password": "wrong", "csrf_token": csrf_token(page.text)},
        headers={"X-Forwarded-For": "192.0.2.66"},
    )
    with stack.db() as session:
        (refusal,) = audit.list_entries(
            session, action="user.sign_in_failed", target=users.actor_of(user), limit=1
        ).entries
    assert refusal.detail is not None and refusal.detail["client"] == "127.0.0.1"


def test_an_ops_user_may_set_up_a_key_and_is_then_asked_for_its_code(
    stack: Stack, browser: Browser
) -> None:
    user = new_user(stack, "ops")
    assert browser.sign_in(user.username, PASSWORD).headers["location"] == "/ops"
    page = browser.get("/account/totp")
    assert page.headers["cache-control"] == "no-store"
    secret = totp_secret_on(page.text)

    done = browser.post(
        "/account/totp", {"code": pyotp.TOTP(secret).now(), "csrf_token": csrf_token(page.text)}
    )

    assert done.headers["location"] == "/account/totp"
    assert secret not in browser.get("/account/totp").text  # shown once, never again
    with Browser(stack.base_url) as later:
        form = {"username": user.username, "password": PASSWORD}
        token = csrf_token(later.get("/sign-in").text)
        answer = later.client.post("/sign-in", data={**form, "csrf_token": token})
        assert answer.headers["location"] == "/sign-in/totp"
        code = pyotp.TOTP(secret).at(time.time() + totp.STEP_SECONDS)  # the step after enrolment's
        assert later.give_code("/sign-in/totp", code).headers["location"] == "/ops"
    assert "user.totp_enrolled" in audit_of(stack, user)
