"""Abnormal usage reaches everyone, a suspected leak rings at night, and unreachable is visible.

- A paper-preferring or address-only account gets a printed postcard about its
  abnormal usage, not "unreachable: 0 deliveries".
- A suspected leak at 23:00 Taipei is urgent: its voice call goes out at once
  and says what to do now, while a normal alert's SMS waits for the morning.
- A notice that reaches nobody is counted on the dashboard, listed (masked) on
  the unreachable customers' page and its export, and told to the producer.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from channels.postcard_print import Card, write_batch
from notifier.deliveries.models import Delivery, Notification, NotificationStatus
from notifier.flows.deliver import deliver_batch
from notifier.policy.rules import UsagePolicy
from notifier.privacy.masking import mask_account_no
from notifier.runtime import Runtime
from tests.integration.test_producer_callbacks import (
    Receiver,
    _producer,
    _register,
    _verify,
)
from tests.integration.test_producer_callbacks import receiver as receiver
from tests.support import events
from tests.support.ledger import Ledger
from tests.support.stack import Stack, wait_until
from tests.support.tables import read_table
from tests.support.web import PASSWORD, Browser, new_user

TAIPEI = ZoneInfo("Asia/Taipei")


def _next_23_taipei() -> datetime:
    """The next 23:00 in Taipei: later than the rows a test creates, so they are due by then."""
    now = datetime.now(TAIPEI)
    at = datetime.combine(now.date(), time(23, 0), tzinfo=TAIPEI)
    return at if at > now else at + timedelta(days=1)


AT_23_TAIPEI = _next_23_taipei()


def usage_event(acct: dict[str, Any], *, kwh: float, reason: str | None) -> dict[str, Any]:
    event = events.abnormal_usage(acct)
    event["usage"].update(kwh=kwh, baseline_kwh=420.0, reason=reason)
    return event


def notification_of(ledger: Ledger, account_no: str) -> Notification:
    with ledger.db() as session:
        return session.exec(
            select(Notification)
            .where(Notification.account_no == account_no)
            .order_by(col(Notification.id).desc())
        ).first()  # type: ignore[return-value]


def deliveries_of(ledger: Ledger, account_no: str) -> list[Delivery]:
    with ledger.db() as session:
        return list(
            session.exec(
                select(Delivery).where(Delivery.account_no == account_no).order_by(col(Delivery.id))
            )
        )


# --- the policy's rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwh", "reason", "urgent"),
    [
        (912.5, "usage 117% above the same period last year", False),
        (912.5, "Suspected LEAK to ground", True),
        (600.0, "疑似漏電，請立即檢查", True),
        (500.0, "熱水器疑似漏水", True),
        (1260.0, None, True),  # exactly 3 × the baseline
        (1259.9, None, False),
    ],
)
def test_a_leak_is_named_or_far_above_the_baseline(
    kwh: float, reason: str | None, urgent: bool
) -> None:
    assert UsagePolicy().is_urgent(kwh=kwh, baseline_kwh=420.0, reason=reason) is urgent


# --- item 9: postcards and urgent calls, on SQLite and PostgreSQL ----------------------------


@pytest.mark.parametrize(
    "contact",
    [
        {"prefers_paper": True, "push_tokens": None, "email": None},
        {"phone": None, "email": None, "push_tokens": None},  # an address, nothing else
    ],
    ids=["prefers-paper", "address-only"],
)
def test_abnormal_usage_reaches_a_paper_account_by_postcard(
    ledger: Ledger, tmp_path: Path, contact: dict[str, Any]
) -> None:
    acct = events.account(**contact)
    ledger.post(usage_event(acct, kwh=912.5, reason=None))

    notice = notification_of(ledger, acct["account_no"])
    assert notice.status == NotificationStatus.ACTIVE
    postcards = [d for d in deliveries_of(ledger, acct["account_no"]) if d.channel == "postcard"]
    [card] = postcards
    body = card.content["body"]
    assert body.startswith("用電異常通知") and "用電 913 度" in body, body
    assert "420 度高出 117%" in body and "客服專線 1911" in body
    assert mask_account_no(acct["account_no"]) in body and acct["account_no"] not in body
    assert "http" not in body

    # Printed as the batch prints it: the PDF renders to a page with text on it.
    identity = ledger.runtime.settings.identity
    batch = write_batch(
        [
            Card(
                delivery_id=card.id or 0,
                recipient_name=acct["name"],
                address=acct["address"],
                body=body,
                language=card.language,
                account_ref=mask_account_no(acct["account_no"]),
            )
        ],
        out_dir=tmp_path,
        batch_id="usage-test",
        sender=identity.sender_name,
        return_address=f"{identity.postal_code}{identity.return_address}",
        service_phone=identity.service_phone,
    )
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed")
    subprocess.run(
        ["pdftoppm", "-f", "2", "-l", "2", "-r", "80", "-png", str(batch.pdf_path),
         str(tmp_path / "card")],
        check=True,
    )  # fmt: skip
    [image] = tmp_path.glob("card*.png")
    assert image.stat().st_size > 5_000


@pytest.fixture
def at_23_taipei(ledger: Ledger) -> Iterator[Runtime]:
    """The ledger's service at 23:00 Taipei, inside the shipped quiet hours (21:00–08:00)."""
    # The ledger's scenarios run with quiet hours off; this one needs the shipped ones.
    settings = ledger.runtime.settings.model_copy(update={"quiet_hours": ""})
    rt = Runtime(settings, clock=lambda: AT_23_TAIPEI)
    assert rt.policy.quiet_hours is not None
    assert rt.policy.quiet_hours.window_opens(AT_23_TAIPEI, rt.policy.tz) is not None
    yield rt
    rt.close()


def _post_at(rt: Runtime, ledger: Ledger, event: dict[str, Any]) -> None:
    from notifier.events.schema import parse_event
    from notifier.events.service import accept
    from notifier.flows.process_event import process_events

    with rt.db.session() as session:
        created = accept(session, [(parse_event(event), event)], producer_key_id=None)
    process_events(rt, [pk for pk in created.values() if pk is not None])


def test_a_leak_at_23_taipei_rings_at_once_and_a_normal_alert_waits(
    ledger: Ledger, at_23_taipei: Runtime
) -> None:
    rt = at_23_taipei
    leak = events.account(push_tokens=None, email=None)
    normal = events.account(push_tokens=None, email=None)
    _post_at(rt, ledger, usage_event(leak, kwh=980.0, reason="疑似漏電：夜間用電持續偏高"))
    _post_at(rt, ledger, usage_event(normal, kwh=912.5, reason=None))

    assert notification_of(ledger, leak["account_no"]).urgent
    assert not notification_of(ledger, normal["account_no"]).urgent
    leak_rows = deliveries_of(ledger, leak["account_no"])
    normal_rows = deliveries_of(ledger, normal["account_no"])
    assert sorted(d.channel for d in leak_rows) == ["sms", "voice"]  # urgent adds the call
    assert [d.channel for d in normal_rows] == ["sms"]

    outcome = deliver_batch(rt, [d.id for d in leak_rows + normal_rows if d.id is not None])
    by_id = {d.id: d for d in deliveries_of(ledger, leak["account_no"])}
    by_id |= {d.id: d for d in deliveries_of(ledger, normal["account_no"])}
    [call] = [d for d in by_id.values() if d.channel == "voice"]
    assert outcome.statuses[call.id] in ("sent", "delivered"), outcome.statuses
    assert call.attempts == 1
    smses = [d for d in by_id.values() if d.channel == "sms"]
    assert [outcome.statuses[d.id] for d in smses] == ["deferred", "deferred"]
    opens = min(d.available_at for d in smses).astimezone(rt.policy.tz)
    assert opens == datetime.combine(AT_23_TAIPEI.date() + timedelta(days=1), time(8), TAIPEI)

    spoken = call.content["body"]
    assert "緊急" in spoken and "關閉所有電器" in spoken and "總開關" in spoken
    assert "1 9 1 1" in spoken and "http" not in spoken


def test_the_urgent_voice_and_postcard_say_what_to_do_now(ledger: Ledger) -> None:
    renderer = ledger.runtime.renderer
    from notifier.notices.rendering import sample_context

    context = sample_context("usage.abnormal")
    for language, words in (("zh-TW", "總開關"), ("en", "main breaker")):
        voice = renderer.render("usage.abnormal", "voice", language, context).body
        card = renderer.render("usage.abnormal", "postcard", language, context).body
        assert words in voice and words in card
        calm = {**context, "usage": {**context["usage"], "urgent": False}}
        assert words not in renderer.render("usage.abnormal", "voice", language, calm).body


# --- item 10: unreachable is visible, on every stack ------------------------------------------


def _page(stack: Stack, username: str) -> str:
    with Browser(stack.base_url) as browser:
        assert browser.sign_in(username, PASSWORD).status_code == 303
        return browser.get("/ops/unreachable").text


def test_an_account_with_no_contact_is_counted_listed_exported_and_told(
    stack: Stack,
    receiver: Receiver,
) -> None:
    producer = _producer(stack)
    path, secret = _register(stack, receiver, producer)
    acct = events.account(
        phone="+886223456789",  # a landline: no SMS, and voice is not on the route
        email=None, push_tokens=None, address=None,
    )  # fmt: skip
    answer = stack.client.post("/v1/events", json=usage_event(acct, kwh=912.5, reason=None),
                               headers=producer)  # fmt: skip
    assert answer.status_code == 202, answer.text

    def unreachable() -> Notification | None:
        with stack.db() as session:
            return session.exec(
                select(Notification).where(
                    Notification.account_no == acct["account_no"],
                    Notification.status == NotificationStatus.UNREACHABLE,
                )
            ).first()

    notice = wait_until(unreachable, timeout=60, what="the unreachable notification")
    assert stack.deliveries(acct["account_no"]) == []
    # Another who opted out of every channel it could use: listed with its data masked.
    refused = events.account(
        phone=None, push_tokens=None, opt_outs=["email", "postcard"], email="wang.xm@example.com"
    )
    assert stack.post(usage_event(refused, kwh=912.5, reason=None)).status_code == 202

    [seen] = wait_until(lambda: receiver.at(path), timeout=60, what="the producer's callback")
    body = _verify(secret, seen)
    assert body["type"] == "notification.unreachable" and body["status"] == "unreachable"
    assert body["notification_id"] == notice.id and body["account_no"] == acct["account_no"]
    assert body["reason"] == "no_contact" and body["event_type"] == "usage.abnormal"
    assert "+886223456789" not in seen.body.decode() and acct["name"] not in seen.body.decode()

    user = new_user(stack, "ops")
    with Browser(stack.base_url) as browser:
        assert browser.sign_in(user.username, PASSWORD).status_code == 303
        dashboard = browser.get("/ops/dashboard")
        page = browser.get("/ops/unreachable")
        files = {fmt: browser.get(f"/ops/unreachable.{fmt}") for fmt in ("csv", "xlsx", "ods")}
    assert dashboard.status_code == 200, dashboard.text
    count = dashboard.text.split('id="unreachable-count">', 1)[1].split("<", 1)[0]
    assert int(count) >= 1
    assert page.status_code == 200, page.text
    row = page.text.split(f'id="notification-{notice.id}"', 1)[1].split("</tr>", 1)[0]
    assert acct["account_no"] in row and "+886 223 ***789" in row and "無聯絡方式" in row
    wait_until(lambda: refused["account_no"] in _page(stack, user.username), timeout=60,
               what="the opted-out account on the page")  # fmt: skip
    opted = _page(stack, user.username).split(refused["account_no"], 1)[1].split("</tr>", 1)[0]
    assert "皆已退訂" in opted and "w***@example.com" in opted and "苗栗縣頭份市…" in opted
    assert "wang.xm@example.com" not in opted and "中正路1號" not in opted
    for shown in (page.text, *(f.content.decode("latin-1") for f in files.values())):
        assert "+886223456789" not in shown and "0223456789" not in shown
    for fmt, download in files.items():
        assert download.status_code == 200, download.text
        header, *rows = read_table(download.content, fmt)  # type: ignore[arg-type]
        assert header[1] == "created (Asia/Taipei)"
        [mine] = [r for r in rows if r[0] == str(notice.id)]
        assert mine[2] == acct["account_no"] and mine[6] == "no_contact"
        # A cell starting with "+" gets the exports' formula guard, a leading "'".
        assert mine[7] == "'+886 223 ***789" and mine[8] == "" and mine[9] == ""
        assert "+886223456789" not in " ".join(mine)
