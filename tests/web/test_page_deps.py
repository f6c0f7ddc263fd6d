"""A page module written as notifier.web.deps says, served beside the stack's API on its database.

It checks what page authors rely on: the sign-in redirect that comes back,
roles and the 403 page, the CSRF check of a POST form, the audit entry of an
action, and the header that ``render`` fills in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated

import pytest
import uvicorn
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from notifier.api.deps import RuntimeDep
from notifier.app import create_app
from notifier.audit import service as audit
from notifier.escalation.agents import add_agent
from notifier.runtime import Runtime
from notifier.users.models import User
from notifier.users.service import actor_of
from notifier.web.deps import OpsUser, WebUser, csrf_protect, redirect, render
from tests.support.stack import Stack, free_port, wait_until
from tests.support.web import PASSWORD, Browser, csrf_token, new_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)

demo = APIRouter(prefix="/demo", include_in_schema=False)


@demo.get("/ops")
def ops_page(request: Request, user: OpsUser) -> HTMLResponse:
    return render(request, "base.html")


@demo.get("/mine")
def anyone_signed_in(request: Request, user: WebUser) -> HTMLResponse:
    return render(request, "base.html")


@demo.post("/retry/{delivery_id}", dependencies=[Depends(csrf_protect)])
def retry(
    delivery_id: int, user: OpsUser, rt: RuntimeDep, note: Annotated[str, Form()] = ""
) -> RedirectResponse:
    with rt.db.session() as session:
        audit.record(
            session,
            actor=actor_of(user),
            action="delivery.retry",
            target=f"delivery {delivery_id}",
            detail={"note": note},
        )
    return redirect("/demo/ops")


@pytest.fixture
def pages(stack: Stack) -> Iterator[str]:
    """The base URL of a second API process of the stack, with the demo pages in it."""
    app = create_app(stack.settings, runtime=Runtime(stack.settings))
    app.include_router(demo)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="demo-pages", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="the demo pages")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    wait_until(lambda: not thread.is_alive(), timeout=30, what="the demo pages to stop")


def entries_of(stack: Stack, user: User) -> list[tuple[str, str | None]]:
    with stack.db() as session:
        page = audit.list_entries(session, actor=actor_of(user), action="delivery.retry")
    return [(e.action, e.target) for e in page.entries]


def test_a_page_sends_strangers_to_sign_in_and_back(stack: Stack, pages: str) -> None:
    user = new_user(stack)
    with Browser(pages) as browser:
        away = browser.get("/demo/ops?status=failed")
        assert (away.status_code, away.headers["location"]) == (
            303,
            "/sign-in?next=%2Fdemo%2Fops%3Fstatus%3Dfailed",
        )
        back = browser.sign_in(user.username, PASSWORD, next="/demo/ops?status=failed")
        assert back.headers["location"] == "/demo/ops?status=failed"
        page = browser.get("/demo/ops?status=failed")
    assert page.status_code == 200 and user.display_name in page.text
    assert 'href="/ops/dashboard"' in page.text and 'href="/agent"' not in page.text


@pytest.mark.parametrize(("role", "status"), [("agent", 403), ("supervisor", 200), ("admin", 200)])
def test_roles_open_their_sections_and_others_get_the_403_page(
    stack: Stack, pages: str, role: str, status: int
) -> None:
    extra = {}
    if role == "agent":
        with stack.db() as session:
            extra["agent_id"] = add_agent(session, name="林建宏", area="demo", kind="caller").id
    user = new_user(stack, role, **extra)
    with Browser(pages) as browser:
        browser.sign_in(user.username, PASSWORD)
        page = browser.get("/demo/ops")
        assert page.status_code == status
        assert ("您的角色無權開啟此頁面。" in page.text) == (status == 403)
        assert browser.get("/demo/mine").status_code == 200  # WebUser: anyone signed in


def test_a_post_form_needs_the_sessions_token_and_is_audited(stack: Stack, pages: str) -> None:
    user = new_user(stack)
    with Browser(pages) as browser:
        assert browser.post("/demo/retry/42", {"note": "x"}).headers["location"] == "/sign-in"
        browser.sign_in(user.username, PASSWORD)
        token = csrf_token(browser.get("/demo/ops").text)

        assert browser.post("/demo/retry/42", {"note": "forged"}).status_code == 403
        assert browser.post("/demo/retry/42", {"note": "x", "csrf_token": "x"}).status_code == 403
        assert entries_of(stack, user) == []

        done = browser.post("/demo/retry/42", {"note": "customer called", "csrf_token": token})
        assert (done.status_code, done.headers["location"]) == (303, "/demo/ops")
    assert entries_of(stack, user) == [("delivery.retry", "delivery 42")]
