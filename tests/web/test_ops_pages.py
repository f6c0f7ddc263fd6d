"""Ops staff on the web pages: find a customer's notice, read its story, retry, cancel, watch."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select

from notifier.accounts.models import Account
from notifier.audit.models import AuditEntry
from notifier.deliveries.models import Delivery
from notifier.web.ops import page_links
from tests.support import events
from tests.support.stack import Stack, wait_until
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
        assert story.text.count('<td data-label="時間"><time') >= 3  # queued → sending → sent


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
        assert "重送為發送" in again.text  # the timeline's "retried as", in the page's words
        assert "retried_as" not in again.text
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


def test_a_customer_is_found_by_the_phone_or_email_they_give_as_they_write_it(
    stack: Stack,
) -> None:
    acct = events.account(phone="+886933221100", push_tokens=None, address=None)
    stack.post(events.unpaid(acct))
    stack.settled(acct["account_no"], count=2)
    other = events.account(push_tokens=None, address=None)
    stack.post(events.unpaid(other))
    stack.settled(other["account_no"], count=2)

    with signed_in(stack) as browser:
        for typed in ("0933-221-100", "+886 933 221 100", acct["email"].upper()):
            log = browser.get("/ops", params={"q": typed})
            assert log.status_code == 200, log.text
            assert acct["account_no"] in log.text, typed
            assert other["account_no"] not in log.text, typed
        assert browser.get("/ops", params={"q": "0999-999-999"}).text.count('id="row-') == 0

    with stack.db() as session:
        stored = session.get(Account, acct["account_no"])
    assert stored is not None and stored.phone_hash and stored.email_hash
    # What is indexed is a keyed hash: neither the number nor its plain digest.
    assert "933221100" not in stored.phone_hash and len(stored.phone_hash) == 64


def test_the_log_keeps_its_filters_in_the_url_and_downloads_them_as_csv(stack: Stack) -> None:
    acct = events.account(push_tokens=None, address=None)
    stack.post(events.unpaid(acct))
    stack.settled(acct["account_no"], count=2)

    with signed_in(stack) as browser:
        log = browser.get("/ops", params={"q": acct["account_no"], "channel": "sms"})
        assert log.text.count('id="row-') == 1
        assert "第 1 頁，共 1 頁" in log.text and "共 1 筆" in log.text
        assert "(Asia/Taipei)" in log.text  # the zone is named once, in the heading
        link = re.search(r'href="(/ops/deliveries\.csv\?[^"]*)"', log.text)
        assert link is not None and "channel=sms" in link.group(1)
        download = browser.get(link.group(1).replace("&amp;", "&"))

    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text.removeprefix("\ufeff"))))
    assert rows[0][0] == "created (Asia/Taipei)" and len(rows) == 2
    # A leading + is quoted, so a spreadsheet does not read the number as a formula.
    assert rows[1][3] == "sms" and rows[1][5] == "'+886 912 ***678"
    assert "+886912345678" not in download.text and acct["email"] not in download.text


def test_the_pager_numbers_the_first_last_and_nearby_pages() -> None:
    assert page_links(1, 1) == [1]
    assert page_links(1, 9) == [1, 2, 3, None, 9]
    assert page_links(5, 9) == [1, None, 3, 4, 5, 6, 7, None, 9]
    assert page_links(9, 9) == [1, None, 7, 8, 9]


def test_a_bulk_retry_asks_first_and_then_retries_each_with_its_audit_entry(
    stack: Stack,
) -> None:
    failed = []
    for _ in range(2):
        acct = events.account(phone=FAILS_FOR_GOOD, push_tokens=None, email=None, address=None)
        stack.post(events.unpaid(acct))
        [one] = stack.settled(acct["account_no"], count=1)
        failed.append(one)
    ok = events.account(push_tokens=None, email=None)
    stack.post(events.unpaid(ok))
    [sent] = stack.settled(ok["account_no"], count=1)
    picked = [str(d.id) for d in (*failed, sent)]

    with signed_in(stack) as browser:
        token = csrf_token(browser.get("/ops").text)
        review = browser.post(
            "/ops/bulk", data={"csrf_token": token, "action": "retry", "ids": picked}
        )
        assert review.status_code == 200, review.text
        assert "將變更 2 筆發送；確認前不會執行任何動作。" in review.text
        accounts = [d.account_no for d in (*failed, sent)]
        with stack.db() as session:  # nothing done yet
            mine = select(Delivery).where(Delivery.account_no.in_(accounts))  # type: ignore[attr-defined]
            assert len(session.exec(mine).all()) == 3
        assert 'name="ids" value="' + str(sent.id) + '"' not in review.text
        done = browser.post(
            "/ops/bulk/confirm",
            data={"csrf_token": token, "action": "retry", "ids": picked[:2]},
        )
        assert done.status_code == 200 and "已完成 2 筆發送。" in done.text
        refused = browser.post("/ops/bulk/confirm", data={"action": "retry", "ids": picked[:2]})
        assert refused.status_code == 403  # no CSRF token: nothing done

    with stack.db() as session:
        targets = [f"delivery {d.id}" for d in failed]
        entries = session.exec(
            select(AuditEntry).where(
                AuditEntry.action == "delivery.retry",
                AuditEntry.target.in_(targets),  # type: ignore[union-attr]
            )
        ).all()
        copies = [d for d in session.exec(mine).all() if d.id not in {x.id for x in failed}]
    assert sorted(e.target or "" for e in entries) == sorted(targets)
    assert len(copies) == 3  # the two retries and the sent one


def test_send_now_releases_a_delivery_quiet_hours_deferred(stack: Stack) -> None:
    now = datetime.now(ZoneInfo("Asia/Taipei"))
    window = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    with stack.worker_with(NOTIFIER_QUIET_HOURS=window):
        acct = events.account(push_tokens=None, email=None, address=None)
        stack.post(events.unpaid(acct))
        [deferred] = wait_until(
            lambda: (
                [d for d in stack.deliveries(acct["account_no"]) if d.status == "deferred"] or None
            ),
            timeout=30,
            what="the SMS deferred by quiet hours",
        )
        with signed_in(stack) as browser:
            story = browser.get(f"/ops/notifications/{deferred.notification_id}")
            assert f'action="/ops/deliveries/{deferred.id}/send-now"' in story.text
            assert "勿擾時段" in story.text and "quiet hours" not in story.text
            done = browser.post(
                f"/ops/deliveries/{deferred.id}/send-now",
                data={"csrf_token": csrf_token(story.text)},
            )
            assert done.status_code == 303 and "done=sent_now" in done.headers["location"]
        [sms] = stack.settled(acct["account_no"], count=1)
    assert sms.id == deferred.id and sms.status in {"sent", "delivered"}
    with stack.db() as session:
        entry = session.exec(
            select(AuditEntry).where(AuditEntry.action == "delivery.send_now")
        ).one()
    assert entry.target == f"delivery {deferred.id}"


def test_the_story_of_a_notice_reads_in_the_pages_language(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None)
    stack.post(events.unpaid(acct))
    [sms] = stack.settled(acct["account_no"], count=1)

    with signed_in(stack) as browser:
        story = browser.get(f"/ops/notifications/{sms.notification_id}").text
        browser.post("/language", data={"lang": "en", "next": "/ops"})
        english = browser.get(f"/ops/notifications/{sms.notification_id}").text

    assert "欠費通知" in story and "依發送規則規劃" in story
    for code in ("bill.unpaid", "planned by policy", "note:", "None", "True"):
        assert code not in _visible(story), code
    assert "unpaid bill" in english and "planned by policy" in english


def test_print_batches_sweep_runs_and_dead_letters_open(stack: Stack) -> None:
    acct = events.account(phone=None, push_tokens=None, email=None)
    stack.post(events.unpaid(acct))
    wait_until(lambda: stack.deliveries(acct["account_no"]) or None, timeout=30, what="postcard")
    stack.print_postcards()
    [card] = stack.settled(acct["account_no"], count=1)
    assert card.provider_id

    with signed_in(stack) as browser:
        batches = browser.get("/ops/print-batches")
        assert card.provider_id in batches.text
        batch = browser.get(f"/ops/print-batches/{card.provider_id}")
        assert f'id="card-{card.id}"' in batch.text
        again = browser.post(
            f"/ops/deliveries/{card.id}/reprint", data={"csrf_token": csrf_token(batch.text)}
        )
        assert again.status_code == 303, again.text
        assert "重印" in browser.get(f"/ops/print-batches/{card.provider_id}").text
        # The list counts the batch's cards queued again: this one.
        listed = browser.get("/ops/print-batches").text
        row = re.search(rf">{re.escape(card.provider_id)}</a>.*?</tr>", listed, re.S)
        assert row and row.group(0).endswith('<td class="number">1</td></tr>'), row
        assert browser.get("/ops/print-batches/PC-none").status_code == 404
        assert browser.get("/ops/sweeps").status_code == 200
        letters = browser.get("/ops/dead-letters")
        assert letters.status_code == 200 and "無效訊息佇列" in letters.text
        audit = browser.get("/ops/audit", params={"action": "postcard.reprint"})
        assert "明信片重印" in audit.text and f"delivery {card.id}" in audit.text


def _visible(html: str) -> str:
    """The page's text as a reader sees it (tags, attributes and the title left out)."""
    body = html.split("<main>", 1)[-1]
    return re.sub(r"<[^>]+>", " ", body)
