"""Ops staff on the web pages: find a customer's notice, read its story, retry, cancel, watch."""

from __future__ import annotations

import re

from sqlmodel import select

from notifier.audit.models import AuditEntry
from notifier.deliveries.models import Delivery
from tests.support import events
from tests.support.stack import Stack
from tests.support.web import PASSWORD, Browser, csrf_token, new_user

FAILS_FOR_GOOD = "+886900000001"  # the sandbox refuses this number permanently


def signed_in(stack: Stack, role: str = "ops") -> Browser:
    user = new_user(stack, role)
    browser = Browser(stack.base_url)
    assert browser.sign_in(user.username, PASSWORD).status_code == 303
    return browser


def test_the_log_filters_to_one_account_and_opens_its_story(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None)
    stack.post(events.unpaid(acct))
    [sms] = stack.settled(acct["account_no"], count=1)
    other = events.account(push_tokens=None, email=None)
    stack.post(events.unpaid(other))
    stack.settled(other["account_no"], count=1)

    with signed_in(stack) as browser:
        log = browser.get("/ops", params={"q": acct["account_no"][:8]})
        assert log.status_code == 200, log.text
        assert acct["account_no"] in log.text and other["account_no"] not in log.text
        assert "+886 912 ***678" in log.text and "+886912345678" not in log.text

        filtered = browser.get("/ops", params={"q": acct["account_no"], "channel": "email"})
        assert 'id="deliveries"' not in filtered.text  # the account had no email

        story = browser.get(f"/ops/notifications/{sms.notification_id}")
        assert story.status_code == 200, story.text
        assert f'id="delivery-{sms.id}"' in story.text
        assert "NT$1,830" in story.text  # the rendered SMS
        assert story.text.count("<tr><td><time") >= 3  # queued → sending → sent/delivered


def test_a_call_script_is_shown_as_people_read_it_without_its_ssml_marks(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None)
    stack.post(events.unpaid(acct, level=2))
    deliveries = stack.settled(acct["account_no"], count=2)
    [call] = [d for d in deliveries if d.channel == "voice"]
    assert '<say-as interpret-as="cardinal">1830</say-as>' in call.content["body"]

    with signed_in(stack) as browser:
        story = browser.get(f"/ops/notifications/{call.notification_id}")

    assert story.status_code == 200, story.text
    assert "1,830元" in story.text
    assert "say-as" not in story.text


def test_a_failed_delivery_is_retried_and_the_audit_says_who(stack: Stack) -> None:
    acct = events.account(phone=FAILS_FOR_GOOD, push_tokens=None, email=None, address=None)
    stack.post(events.unpaid(acct))
    [failed] = stack.settled(acct["account_no"], count=1)  # no other channel to fall back to
    assert failed.status == "failed"

    with signed_in(stack) as browser:
        story = browser.get(f"/ops/notifications/{failed.notification_id}")
        token = csrf_token(story.text)
        refused = browser.post(f"/ops/deliveries/{failed.id}/retry", data={})
        assert refused.status_code == 403  # no CSRF token: nothing done
        done = browser.post(f"/ops/deliveries/{failed.id}/retry", data={"csrf_token": token})
        assert done.status_code == 303, done.text
        assert "done=retried" in done.headers["location"]
        twice = browser.post(f"/ops/deliveries/{failed.id}/retry", data={"csrf_token": token})
        assert twice.status_code == 409  # a double click: one retry, not two sends
        assert "retried already" in twice.text

        again = browser.get(f"/ops/notifications/{failed.notification_id}")
        assert "retried_as" in again.text
        audit = browser.get("/ops/audit", params={"action": "delivery.retry"})
        assert f"delivery {failed.id}" in audit.text

    with stack.db() as session:
        retry = session.exec(
            select(Delivery)
            .where(Delivery.account_no == acct["account_no"])
            .order_by(Delivery.id.desc())  # type: ignore[union-attr]
        ).first()
        entry = session.exec(
            select(AuditEntry).where(AuditEntry.target == f"delivery {failed.id}")
        ).one()
    assert retry is not None and retry.id != failed.id and retry.channel == failed.channel
    with stack.db() as session:
        copies = session.exec(
            select(Delivery).where(Delivery.notification_id == failed.notification_id)
        ).all()
    assert len(copies) == 2  # the failed one and its one retry
    assert entry.action == "delivery.retry" and entry.actor.startswith("user ")


def test_no_retry_is_offered_once_the_fallback_reached_the_customer(stack: Stack) -> None:
    acct = events.account(phone=FAILS_FOR_GOOD, push_tokens=None, email=None)
    stack.post(events.unpaid(acct))
    rows = stack.settled(acct["account_no"], count=2)  # SMS refused, the postcard printed
    failed = next(d for d in rows if d.status == "failed")
    assert any(d.status in {"sent", "delivered"} for d in rows)

    with signed_in(stack) as browser:
        story = browser.get(f"/ops/notifications/{failed.notification_id}")
        assert f'action="/ops/deliveries/{failed.id}/retry"' not in story.text
        token = csrf_token(story.text)
        refused = browser.post(f"/ops/deliveries/{failed.id}/retry", data={"csrf_token": token})

    assert refused.status_code == 409 and "reached the customer" in refused.text


def test_the_dashboard_draws_its_charts(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None)
    stack.post(events.unpaid(acct))
    stack.settled(acct["account_no"], count=1)

    with signed_in(stack) as browser:
        page = browser.get("/ops/dashboard")

    assert page.status_code == 200, page.text
    assert page.text.count("<svg") >= 4
    assert re.search(r'id="queues"', page.text)
    assert "<script" not in page.text


def test_an_agent_may_not_open_the_ops_pages(stack: Stack) -> None:
    from notifier.escalation.agents import add_agent

    with stack.db() as session:
        agent = add_agent(session, name="林建宏", area="toufen", kind="caller")
    user = new_user(stack, "agent", agent_id=agent.id)
    with Browser(stack.base_url) as browser:
        browser.sign_in(user.username, PASSWORD)
        assert browser.get("/ops").status_code == 403
        assert browser.get("/ops/dashboard").status_code == 403
