"""Every route of ``create_app()`` against every role, as ``notifier.auth.access`` says.

The table is the rule; this walks the app's routes, fails on a route without
a row (or a row without a route), and sends each route a request as each
role — API keys for the JSON API and ``/metrics``, signed-in users for the
pages, both for the open routes — and as nobody. A route a role may use must
not answer 401/403 (a 404 or 422 is fine: the check passed); one it may not
must answer 401/403, or, for a page, send the browser to ``/sign-in``.

Requests carry realistic parameters (the agent's own case, the producer's
own event, a delivery that exists), and the bodies of actions are ones the
route refuses after its check (422, 409), so nothing changes as the matrix
runs. What a role sees once in (own events, own cases, masked or not) is
tested in ``test_roles_and_audit.py``.

The app runs on the stack's database beside the stack's own API, with a
metrics token and a Twilio auth token set, so that those gates are shut.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from notifier.app import create_app
from notifier.auth import access, keys
from notifier.deliveries.models import FINAL_STATUSES
from notifier.escalation.agents import add_agent
from notifier.escalation.sweep import sweep
from notifier.runtime import Runtime
from notifier.web.deps import SESSION_COOKIE
from tests.integration.test_escalation_api import TODAY, case_of, in_arrears, new_area, processed
from tests.support import events
from tests.support.stack import Stack, free_port, wait_until
from tests.support.web import PASSWORD, Browser, csrf_token, new_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)

METRICS_TOKEN = "metrics-" + secrets.token_hex(8)
TWILIO_TOKEN = "twilio-" + secrets.token_hex(8)
NOBODY = "nobody"

# Query strings that let a route answer (a 422 would do too, but these read as uses).
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/v1/escalations/mine"): {"kind": "visit"},
    ("GET", "/v1/templates/preview"): {"event": "bill.unpaid", "channel": "sms"},
}
# Bodies refused after the role check, so a matrix run changes nothing.
JSON_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/events/batch"): {"events": []},
    ("POST", "/v1/escalations/sweeps"): {"as_of": "not a date"},
    ("POST", "/v1/escalations/{case_id}/outcome"): {"outcome": "not an outcome"},
    ("POST", "/v1/escalations/{case_id}/assign"): {"agent_id": 999_999_999},
    ("PUT", "/v1/producer/callback"): {"url": "ftp://not.a.callback"},
    ("POST", "/v1/holds"): {"scope": "not a scope", "reason": "dispute"},
    ("POST", "/v1/agents"): {"name": "", "area": "", "kind": "not a kind"},
    ("PATCH", "/v1/agents/{agent_id}"): {"daily_capacity": 0},
    ("POST", "/v1/accounts/{account_no}/protections"): {"protections": ["not a protection"]},
}
TWILIO_FORM = {"MessageStatus": "sent", "MessageSid": "SM" + "0" * 32}
FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/agent/cases/{case_id}/outcome"): {"outcome": "not an outcome"},
    ("POST", "/agent/cases/{case_id}/assign"): {"agent_id": "999999999"},
    ("POST", "/agent/accounts/{account_no}/protections"): {
        "protection": "not a protection",
        "case_id": "1",
    },
    ("POST", "/language"): {"lang": "en", "next": "/"},
    ("POST", "/agent/holds"): {"scope": "not a scope", "reason": "dispute"},
}


@dataclass
class Caller:
    """A role with its credential: a key's header, or a browser signed in as a user."""

    name: str
    role: access.Role | None
    kind: str  # "key", "user" or "none"
    client: httpx.Client
    headers: dict[str, str] = field(default_factory=dict)
    csrf: str = ""
    username: str = ""


@dataclass
class World:
    app: FastAPI
    base_url: str
    params: dict[str, str]
    callers: list[Caller]
    event: dict[str, Any]


@contextmanager
def _server(stack: Stack) -> Iterator[tuple[FastAPI, str]]:
    """A second API on the stack's database, with the metrics and Twilio gates shut."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = stack.settings.model_copy(
        update={
            "metrics_token": SecretStr(METRICS_TOKEN),
            "twilio": stack.settings.twilio.model_copy(
                update={"auth_token": SecretStr(TWILIO_TOKEN)}
            ),
            "public_url": base_url,
        }
    )
    app = create_app(settings, runtime=Runtime(settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="access-matrix", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="the access-matrix API")
    try:
        yield app, base_url
    finally:
        server.should_exit = True
        wait_until(lambda: not thread.is_alive(), timeout=30, what="the access-matrix API to stop")


@pytest.fixture
def world(stack: Stack) -> Iterator[World]:
    area = new_area()
    with stack.db() as session:
        field_agent = add_agent(session, name="陳志明", area=area, kind="field")
    assert field_agent.id is not None
    acct = in_arrears(stack, area, vulnerable=True)  # a visit case, for the field agent
    run = sweep(stack.runtime.db, stack.runtime.policy.escalation, TODAY, trigger="test")
    case = case_of(stack, acct["account_no"])
    assert (case.kind, case.assignee_id) == ("visit", field_agent.id)

    headers: dict[str, dict[str, str]] = {}
    with stack.db() as session:
        for role in access.ROLES:
            agent_id = field_agent.id if role in ("agent", "supervisor", "admin") else None
            _, key = keys.create_key(session, role=role, name=f"matrix {role}", agent_id=agent_id)
            headers[role] = {"Authorization": f"Bearer {key}"}

    # The producer's own event, with deliveries to point the ops routes at.
    customer = events.account(area=area)
    event = events.unpaid(customer)
    assert (
        stack.client.post("/v1/events", json=event, headers=headers["producer"]).status_code == 202
    )
    processed(stack, [event["event_id"]])
    email = wait_until(
        lambda: next(
            (
                d
                for d in stack.deliveries(customer["account_no"])
                if d.channel == "email" and d.status in FINAL_STATUSES
            ),
            None,
        ),
        timeout=60,
        what="a final email delivery",
    )

    with _server(stack) as (app, base_url):
        callers: list[Caller] = []
        for role in access.ROLES:
            callers.append(
                Caller(
                    role, role, "key", httpx.Client(base_url=base_url, timeout=30), headers[role]
                )
            )
        for role in access.USER_ROLES:
            agent_id = field_agent.id if role != "ops" else None
            user = new_user(stack, role, agent_id=agent_id)
            browser = Browser(base_url)
            signed_in = browser.sign_in(user.username, PASSWORD)
            assert signed_in.status_code == 303, signed_in.text
            home = browser.get(signed_in.headers["location"])
            assert home.status_code == 200, home.text
            callers.append(
                Caller(
                    f"{role} user",
                    role,
                    "user",
                    browser.client,
                    csrf=csrf_token(home.text),
                    username=user.username,
                )
            )
        callers.append(Caller(NOBODY, None, "none", httpx.Client(base_url=base_url, timeout=30)))
        params = {
            "event_id": event["event_id"],
            "delivery_id": str(email.id),
            "notification_id": str(email.notification_id),
            "account_no": acct["account_no"],
            "case_id": str(case.id),
            "agent_id": str(field_agent.id),
            "run_id": str(run.id),
            "fmt": "csv",
            "token": "not-a-callback-token",
            "hold_id": "999999999",  # no such hold: a release changes nothing
            "batch_id": "no-such-batch",  # a 404 to those let in, as no batch was printed
        }
        try:
            yield World(app, base_url, params, callers, event)
        finally:
            for caller in callers:
                caller.client.close()


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """``(method, path template)`` of every route and mount, HEAD left out."""
    found = set()
    for route in iter_route_contexts(app.routes):
        if route.path is None:
            continue
        for method in (route.methods or {"GET"}) - {"HEAD"}:
            found.add((method, route.path))
    return found


def refused(answer: httpx.Response) -> bool:
    """401/403, or a page sending the browser to sign in."""
    if answer.status_code in (401, 403):
        return True
    return answer.status_code in (302, 303, 307) and answer.headers.get("location", "").startswith(
        "/sign-in"
    )


def url_of(world: World, template: str) -> str:
    if template == "/static":
        return "/static/app.css"
    if template == "/static/apidocs":
        return "/static/apidocs/swagger-ui.css"

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in world.params, f"no value for path parameter {{{name}}} in {template}"
        return world.params[name]

    return re.sub(r"\{(\w+)\}", value, template)


def send(world: World, caller: Caller, method: str, route: str) -> httpx.Response:
    """One request to ``route`` (``?query`` variants included) as ``caller``."""
    template, _, variant = route.partition("?")
    key = (method, template)
    url = url_of(world, template)
    query = {**QUERIES.get(key, {}), **dict(p.split("=") for p in variant.split("&") if p)}
    headers = dict(caller.headers)
    client = caller.client
    if key == ("POST", "/sign-in"):
        # Public, with a double-submit token of its own: a fresh browser, whoever asks.
        with Browser(world.base_url) as fresh:
            page = fresh.get("/sign-in")
            return fresh.post(
                "/sign-in",
                {
                    "username": "nobody-here",
                    "password": "wrong",
                    "csrf_token": csrf_token(page.text),
                },
            )
    if key == ("POST", "/sign-out") and caller.kind == "user":
        # Signing out ends the session: a second one of the same user's.
        with Browser(world.base_url) as fresh:
            home = fresh.get(fresh.sign_in(caller.username, PASSWORD).headers["location"])
            return fresh.post("/sign-out", {"csrf_token": csrf_token(home.text)})
    if template.startswith("/v1/callbacks/twilio"):
        return _retry(lambda: client.post(url, data=TWILIO_FORM, headers=headers))
    if template.startswith("/v1/") and method in ("POST", "PUT"):
        body = JSON_BODIES.get(key)
        if key == ("POST", "/v1/events"):
            body = {**world.event, "event_id": f"matrix-{secrets.token_hex(6)}"}
        return _retry(lambda: client.request(method, url, params=query, json=body, headers=headers))
    if method == "POST":
        form = {**FORMS.get(key, {}), "csrf_token": caller.csrf}
        return _retry(lambda: client.post(url, data=form, headers=headers))
    return _retry(lambda: client.request(method, url, params=query, headers=headers))


def _retry(call: Callable[[], httpx.Response]) -> httpx.Response:
    """A request, sent again once if a rate limit answered 429."""
    answer = call()
    if answer.status_code == 429:
        time.sleep(float(answer.headers.get("retry-after", "1")))
        answer = call()
    return answer


def opened_by_its_gate(world: World, rule: access.Rule, method: str, route: str) -> httpx.Response:
    """The request with what opens a Twilio or metrics route: the signature, the token."""
    url = url_of(world, route)
    with httpx.Client(base_url=world.base_url, timeout=30) as client:
        if rule.gate == "metrics-token":
            return client.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(
            world.base_url + url, TWILIO_FORM
        )
        return client.post(url, data=TWILIO_FORM, headers={"X-Twilio-Signature": signature})


def expected(rule: access.Rule, caller: Caller) -> bool:
    """Whether ``caller`` passes ``rule``'s check."""
    if rule.gate == "public":
        return True
    if rule.gate == "signed-in":
        return caller.kind == "user"
    if rule.gate in ("twilio-signature", "url-token", "metrics-token"):
        return False
    return caller.role is not None and rule.admits(caller.role)


def callers_for(group: access.Group, world: World) -> list[Caller]:
    """Keys for the JSON API, users for pages, everyone for open routes; always nobody."""
    kinds = {"key": {"key", "none"}, "user": {"user", "none"}, "none": {"key", "user", "none"}}
    return [c for c in world.callers if c.kind in kinds[group.credentials]]


def test_every_route_has_a_rule_and_every_rule_a_route(world: World) -> None:
    routes = app_routes(world.app)
    ruled = {(method, path.partition("?")[0]) for method, path in access.ROUTES}
    assert sorted(routes - ruled) == [], "routes without a rule in notifier/auth/access.py"
    assert sorted(ruled - routes) == [], "rules in notifier/auth/access.py for no route"


def test_each_role_is_let_in_exactly_where_the_table_says(world: World) -> None:
    wrong: list[str] = []
    matrix: list[str] = []
    for group in access.GROUPS:
        for method, route in group.routes:
            cells = []
            for caller in callers_for(group, world):
                answer = send(world, caller, method, route)
                allowed = expected(group.rule, caller)
                if group.rule.gate == "public":
                    passed = answer.status_code not in (401, 403)
                elif (method, route) == ("POST", "/sign-out"):
                    # Signed out or sent to sign in: both go to /sign-in; one ends a session.
                    passed = SESSION_COOKIE in answer.headers.get("set-cookie", "")
                else:
                    passed = not refused(answer)
                if passed != allowed:
                    wrong.append(
                        f"{method} {route} as {caller.name}: {answer.status_code} "
                        f"{'(let in)' if passed else '(refused)'}, the table says "
                        f"{'let in' if allowed else 'refuse'}: {answer.text[:200]}"
                    )
                cells.append(f"{caller.name}={answer.status_code}")
            if group.rule.gate in ("twilio-signature", "metrics-token"):
                opened = opened_by_its_gate(world, group.rule, method, route)
                shut_by_gate = opened.status_code == 401 or (
                    opened.status_code == 403 and "signature" in opened.text
                )
                if shut_by_gate:
                    wrong.append(f"{method} {route} with its {group.rule.gate}: {opened.text}")
                cells.append(f"{group.rule.gate}={opened.status_code}")
            matrix.append(f"{method} {route}: " + " ".join(cells))
    print("\n".join(matrix))
    assert wrong == [], "\n".join(wrong)
