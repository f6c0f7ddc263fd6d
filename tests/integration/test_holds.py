"""Holds (dunning locks) on the calendar: a dispute, a disputed bill, a disaster area.

The billing system places and releases holds over the API (the app on the
ledger's database, both SQLite and PostgreSQL); bills and payments are posted
as events; the service's clock is set to 10:00 Taipei on each named day, and
the release work runs as the worker runs it. Bimonthly bills fall due on the
20th of odd months: B07 on 20 Sep, B09 on 20 Nov.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, func, select

from notifier.accounts.models import Account
from notifier.app import create_app
from notifier.audit.models import AuditEntry
from notifier.auth import keys
from notifier.db import utcnow
from notifier.deliveries.models import Delivery, DeliveryChange, Notification
from notifier.escalation.holds import Hold, releases_owed
from notifier.escalation.lists import CaseFilter, agent_list, case_rows
from notifier.flows.holds import release
from tests.support import events
from tests.support.ledger import Ledger
from tests.support.stack import Stack, wait_until
from tests.support.web import PASSWORD, csrf_token, new_user

TAIPEI = ZoneInfo("Asia/Taipei")
SEP_20, OCT_5, NOV_10 = date(2026, 9, 20), date(2026, 10, 5), date(2026, 11, 10)
NOV_20, NOV_25, DEC_1 = date(2026, 11, 20), date(2026, 11, 25), date(2026, 12, 1)


class Calendar:
    def __init__(self) -> None:
        self.now = datetime.combine(OCT_5, time(10), tzinfo=TAIPEI)

    def on(self, day: date) -> None:
        self.now = datetime.combine(day, time(10), tzinfo=TAIPEI)


@pytest.fixture
def calendar(ledger: Ledger) -> Iterator[Calendar]:
    cal = Calendar()
    ledger.runtime.clock = lambda: cal.now.astimezone(UTC)
    yield cal
    ledger.runtime.clock = utcnow


@pytest.fixture
def api(ledger: Ledger) -> TestClient:
    # No lifespan (no `with`): it would close the ledger's runtime at the end.
    return TestClient(create_app(runtime=ledger.runtime))


def key(ledger: Ledger, role: keys.Role) -> dict[str, str]:
    with ledger.db() as session:
        _, secret = keys.create_key(session, role=role, name=f"test {role}")
    return {"Authorization": f"Bearer {secret}"}


# -- the billing side and the service ------------------------------------------------------


def unpaid(ledger: Ledger, acct: dict[str, Any], period: str, due: date, level: int = 1) -> dict:
    event = events.unpaid(acct, period=period, due=due, level=level)
    ledger.post(event)
    bill: dict[str, Any] = event["bill"]
    return bill


def issue(ledger: Ledger, acct: dict[str, Any], period: str, due: date) -> dict[str, Any]:
    return ledger.issue(acct, period, due)


def notices(ledger: Ledger, account_no: str) -> list[Notification]:
    """The account's bill.unpaid notifications, oldest first."""
    with ledger.db() as session:
        return list(
            session.exec(
                select(Notification)
                .where(Notification.account_no == account_no, Notification.type == "bill.unpaid")
                .order_by(col(Notification.id))
            )
        )


def deliveries_of(ledger: Ledger, notification: Notification) -> list[Delivery]:
    with ledger.db() as session:
        return list(
            session.exec(select(Delivery).where(Delivery.notification_id == notification.id)).all()
        )


def work_release(ledger: Ledger, hold_id: int, chunk: int = 500) -> Hold:
    """What the worker's ``notifier.release_hold`` task does."""
    hold = release(ledger.runtime, hold_id, chunk=chunk)
    assert hold is not None
    return hold


def place(api: TestClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = api.post("/v1/holds", json=body, headers=auth)
    assert answer.status_code == 201, answer.text
    placed: dict[str, Any] = answer.json()
    return placed


# -- a dispute on an account ---------------------------------------------------------------


def test_a_disputed_account_is_not_dunned_until_released_then_told_once_and_escalated(
    ledger: Ledger, calendar: Calendar, api: TestClient
) -> None:
    acct = events.account(area=ledger.new_area(), email=None)
    caller = ledger.add_agent(acct["area"], "caller")
    producer = key(ledger, "producer")
    b07 = unpaid(ledger, acct, "2026-07", SEP_20, level=1)
    [first] = notices(ledger, acct["account_no"])
    assert first.status == "active"

    hold = place(
        api, producer, scope="account", account_no=acct["account_no"], reason="dispute",
        starts_on=OCT_5.isoformat(), note="客戶對 7 月度數有疑義",
    )  # fmt: skip
    assert hold["active"] and hold["created_by"].startswith("key ")

    calendar.on(NOV_10)
    unpaid(ledger, acct, "2026-07", SEP_20, level=2)
    held = notices(ledger, acct["account_no"])[-1]
    assert (held.level, held.status, held.held_by) == (2, "suppressed", hold["id"])
    rows = deliveries_of(ledger, held)
    assert rows and {d.status for d in rows} == {"suppressed"}
    with ledger.db() as session:
        change = session.exec(
            select(DeliveryChange).where(DeliveryChange.delivery_id == rows[0].id)
        ).one()
    assert change.detail["reason"] == "held" and "dispute" in change.detail["note"]

    calendar.on(NOV_20)
    b09 = issue(ledger, acct, "2026-09", NOV_20)
    ledger.sweep(NOV_20)
    assert ledger.cases(acct["account_no"]) == []  # the second billing date, but held

    calendar.on(NOV_25)
    released = api.delete(f"/v1/holds/{hold['id']}", headers=producer)
    assert released.status_code == 200, released.text
    assert released.json()["released_at"] and not released.json()["active"]
    again = api.delete(f"/v1/holds/{hold['id']}", headers=producer)
    assert (
        again.status_code == 200 and again.json()["released_at"] == released.json()["released_at"]
    )

    done = work_release(ledger, hold["id"])
    assert (done.release_accounts, done.release_notified) == (1, 1)
    told = notices(ledger, acct["account_no"])[-1]
    assert (told.status, told.level, told.held_by, told.bill_no) == (
        "active", 2, None, b07["bill_no"],
    )  # fmt: skip
    sms = next(d for d in deliveries_of(ledger, told) if d.channel == "sms")
    assert sms.status == "queued"
    # What the ledger says now: both bills are overdue, at their amounts.
    stated = {t[0] for t in sms.stated["bills"]} if sms.stated else set()
    assert stated == {b07["bill_no"], b09["bill_no"]}
    assert "NT$3,660" in sms.content["body"]

    work_release(ledger, hold["id"])  # a redelivered task: nothing more
    assert len(notices(ledger, acct["account_no"])) == 3

    ledger.sweep(NOV_25)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.assignee_id == caller
    with ledger.db() as session:
        trail = session.exec(
            select(AuditEntry.action).where(AuditEntry.target == f"hold {hold['id']}")
        ).all()
    assert sorted(trail) == ["hold.create", "hold.release"]


def test_an_open_case_leaves_the_agents_list_while_held_and_supervisors_see_why(
    ledger: Ledger, calendar: Calendar, api: TestClient
) -> None:
    acct = events.account(area=ledger.new_area(), email=None)
    caller = ledger.add_agent(acct["area"], "caller")
    supervisor = key(ledger, "supervisor")
    issue(ledger, acct, "2026-07", SEP_20)
    issue(ledger, acct, "2026-09", NOV_20)
    calendar.on(NOV_20)
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None
    with ledger.db() as session:
        assert [r.case_id for r in agent_list(session, caller, "call", today=NOV_20)] == [case.id]

    hold = place(
        api, supervisor, scope="account", account_no=acct["account_no"], reason="payment_plan",
        starts_on=NOV_20.isoformat(), ends_on=DEC_1.isoformat(),
    )  # fmt: skip
    detail = api.get(f"/v1/escalations/{case.id}", headers=supervisor)
    assert detail.json()["hold"] == {
        "hold_id": hold["id"], "scope": "account", "reason": "payment_plan", "ends_on": "2026-12-01",
    }  # fmt: skip

    with ledger.db() as session:
        assert agent_list(session, caller, "call", today=NOV_25) == []
        [row] = case_rows(session, CaseFilter(case_id=case.id), today=NOV_25)
        assert row.hold is not None
        assert (row.hold.hold_id, row.hold.reason, row.hold.ends_on) == (
            hold["id"], "payment_plan", DEC_1,
        )  # fmt: skip
        # The day after it ends the case is back on the list, and the release is owed.
        back = agent_list(session, caller, "call", today=date(2026, 12, 2))
        assert [r.case_id for r in back] == [case.id]
        owed = releases_owed(session, today=date(2026, 12, 2), before=utcnow(), now=utcnow())
    assert hold["id"] in owed


# -- a disputed bill ------------------------------------------------------------------------


def test_a_bill_hold_keeps_that_bill_quiet_and_the_other_bill_dunned(
    ledger: Ledger, calendar: Calendar, api: TestClient
) -> None:
    acct = events.account(area=ledger.new_area(), email=None)
    producer = key(ledger, "producer")
    b07 = issue(ledger, acct, "2026-07", SEP_20)
    hold = place(
        api, producer, scope="bill", bill_no=b07["bill_no"], reason="dispute",
        starts_on=OCT_5.isoformat(),
    )  # fmt: skip
    assert hold["account_no"] is None and hold["bill_no"] == b07["bill_no"]

    calendar.on(NOV_25)
    unpaid(ledger, acct, "2026-07", SEP_20, level=2)
    unpaid(ledger, acct, "2026-09", NOV_20, level=1)
    by_bill = {n.bill_no: n for n in notices(ledger, acct["account_no"])}
    assert (by_bill[b07["bill_no"]].status, by_bill[b07["bill_no"]].held_by) == (
        "suppressed", hold["id"],
    )  # fmt: skip
    b09 = by_bill[f"B202609-{acct['account_no']}"]
    assert (b09.status, b09.held_by) == ("active", None)
    assert {d.status for d in deliveries_of(ledger, b09)} == {"queued"}

    # B07 left out of the rule: B09 alone is not a case yet.
    ledger.sweep(NOV_25)
    assert ledger.cases(acct["account_no"]) == []
    listed = api.get("/v1/holds", params={"account_no": acct["account_no"]}, headers=producer)
    assert [h["id"] for h in listed.json()] == [hold["id"]]


# -- a disaster area ------------------------------------------------------------------------


def test_a_disaster_area_hold_released_at_once_tells_each_account_still_owing_once(
    ledger: Ledger, calendar: Calendar, api: TestClient
) -> None:
    area = ledger.new_area()
    accounts = [events.account(area=area, email=None) for _ in range(300)]
    supervisor = key(ledger, "supervisor")
    for acct in accounts[:1]:
        issue(ledger, acct, "2026-07", SEP_20)  # the area is known to the service
    hold = place(
        api, supervisor, scope="area", area=area, reason="disaster",
        starts_on=OCT_5.isoformat(), note="0403 地震災區，暫停催繳",
    )  # fmt: skip

    calendar.on(NOV_10)
    ledger.post(*[events.unpaid(a, period="2026-07", due=SEP_20, level=1) for a in accounts])
    ledger.post(*[events.unpaid(a, period="2026-07", due=SEP_20, level=2) for a in accounts[:50]])
    held = [n for a in accounts[:60] for n in notices(ledger, a["account_no"])]
    assert {(n.status, n.held_by) for n in held} == {("suppressed", hold["id"])}
    paid, owing = accounts[200:], accounts[:200]
    for acct in paid:
        ledger.pay(acct, events.bill(acct["account_no"], period="2026-07", due=SEP_20), on=NOV_20)

    calendar.on(NOV_25)
    assert api.delete(f"/v1/holds/{hold['id']}", headers=supervisor).status_code == 200
    done = work_release(ledger, hold["id"], chunk=64)

    assert (done.release_accounts, done.release_checked) == (300, 300)
    assert done.release_notified == 200 and done.release_done_at is not None
    for acct in owing:
        told = [n for n in notices(ledger, acct["account_no"]) if n.status == "active"]
        assert len(told) == 1, acct["account_no"]
    assert notices(ledger, owing[0]["account_no"])[-1].level == 2  # the highest level held
    assert notices(ledger, owing[100]["account_no"])[-1].level == 1
    for acct in paid:
        assert all(n.status == "suppressed" for n in notices(ledger, acct["account_no"]))

    work_release(ledger, hold["id"])
    assert sum(len(notices(ledger, a["account_no"])) for a in accounts) == 300 + 50 + 200

    listed = api.get("/v1/holds", params={"area": area}, headers=supervisor).json()
    assert listed[0]["release"]["notified"] == 200


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "role"),
    [
        ({"scope": "account", "account_no": "09999999999", "reason": "dispute"}, "account_no", "producer"),
        ({"scope": "bill", "bill_no": "B-nowhere", "reason": "dispute"}, "bill_no", "producer"),
        ({"scope": "account", "reason": "dispute", "starts_on": "2026-12-10", "ends_on": "2026-12-09"}, "ends_on", "producer"),
        ({"scope": "account", "reason": "forgot"}, "reason", "producer"),
        ({"scope": "street", "reason": "dispute"}, "scope", "producer"),
        ({"scope": "area", "reason": "disaster", "note": "地震"}, "scope", "producer"),
        ({"scope": "account", "reason": "other"}, "note", "producer"),
        ({"scope": "area", "reason": "disaster"}, "note", "supervisor"),
        ({"scope": "area", "area": "nowhere-at-all", "reason": "disaster", "note": "x"}, "area", "supervisor"),
        ({"scope": "bill", "reason": "dispute"}, "bill_no", "producer"),
        ({"scope": "account", "area": "toufen", "reason": "dispute"}, "area", "producer"),
        ({"scope": "account", "reason": "dispute", "starts_on": "not a date"}, "starts_on", "producer"),
        ({"scope": "account", "reason": "other", "note": "客戶\u202e申訴"}, "note", "producer"),
        ({"scope": "account", "reason": "other", "note": "bell\u0007"}, "note", "producer"),
    ],
)  # fmt: skip
def test_a_bad_hold_is_refused_naming_the_field_and_nothing_is_stored(
    ledger: Ledger, calendar: Calendar, api: TestClient, body: dict[str, Any], field: str,
    role: keys.Role,
) -> None:  # fmt: skip
    acct = events.account(area=ledger.new_area())
    issue(ledger, acct, "2026-07", SEP_20)
    calendar.on(date(2026, 12, 1))
    if body["scope"] == "account" and "account_no" not in body:
        body = {**body, "account_no": acct["account_no"]}
    if body["scope"] == "area" and field == "scope":
        body = {**body, "area": acct["area"]}
    if body["scope"] == "area" and field == "note":
        body = {**body, "area": acct["area"]}
    with ledger.db() as session:
        before = session.exec(select(func.count()).select_from(Hold)).one()

    answer = api.post("/v1/holds", json=body, headers=key(ledger, role))

    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]], answer.json()
    with ledger.db() as session:
        assert session.exec(select(func.count()).select_from(Hold)).one() == before


def test_ops_may_read_holds_but_not_place_or_release_them(ledger: Ledger, api: TestClient) -> None:
    ops = key(ledger, "ops")
    assert api.get("/v1/holds", params={"active": "true"}, headers=ops).status_code == 200
    body = {"scope": "account", "account_no": "01234567890", "reason": "dispute"}
    assert api.post("/v1/holds", json=body, headers=ops).status_code == 403
    assert api.delete("/v1/holds/1", headers=ops).status_code == 403


# -- the supervisors' page ------------------------------------------------------------------


def test_a_supervisor_places_and_releases_a_hold_on_the_page(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = events.account(area=ledger.new_area(), name="陳美惠")
    ledger.add_agent(acct["area"], "caller")
    issue(ledger, acct, "2026-07", SEP_20)
    issue(ledger, acct, "2026-09", NOV_20)
    calendar.on(NOV_20)
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None
    user = new_user(ledger, "supervisor", enrol_totp=False)  # type: ignore[arg-type]
    browser = TestClient(create_app(runtime=ledger.runtime), follow_redirects=False)
    page = browser.get("/sign-in")
    signed = browser.post(
        "/sign-in",
        data={"username": user.username, "password": PASSWORD, "next": "",
              "csrf_token": csrf_token(page.text)},
    )  # fmt: skip
    assert signed.headers["location"] == "/sign-in/enrol", signed.text
    # A supervisor sets up a TOTP key first; its code is of the calendar's time.
    enrol = browser.get("/sign-in/enrol")
    key = re.search(r"secret=([A-Z2-7]+)", enrol.text)
    assert key is not None, enrol.text
    code = pyotp.TOTP(key.group(1)).at(ledger.runtime.clock())
    signed = browser.post(
        "/sign-in/enrol", data={"code": code, "csrf_token": csrf_token(enrol.text), "next": ""}
    )
    assert signed.status_code == 303, signed.text

    page = browser.get("/agent/holds")
    assert page.status_code == 200, page.text
    assert "暫停催繳" in page.text and 'name="csrf_token"' in page.text
    form = {
        "csrf_token": csrf_token(page.text), "scope": "area", "subject": acct["area"],
        "reason": "disaster", "starts_on": NOV_20.isoformat(), "ends_on": "",
    }  # fmt: skip
    refused = browser.post("/agent/holds", data=form)  # an area hold needs a note
    assert refused.headers["location"] == "/agent/holds?problem=note"
    assert "請檢查「備註」" in browser.get(refused.headers["location"]).text
    placed = browser.post("/agent/holds", data={**form, "note": "颱風停電區"})
    assert placed.status_code == 303 and "done=" in placed.headers["location"]
    hold_id = int(placed.headers["location"].split("done=")[1])
    listed = browser.get(placed.headers["location"]).text
    assert f'id="hold-{hold_id}"' in listed and "颱風停電區" in listed and "災區" in listed

    cases = browser.get("/agent", params={"area": acct["area"]}).text
    assert f'id="case-{case.id}"' in cases and "暫停催繳中" in cases and "災區" in cases

    browser.cookies.set("lang", "en")
    english = browser.get("/agent/holds").text
    assert "Holds" in english and "disaster" in english and "Release" in english

    forged = browser.post(f"/agent/holds/{hold_id}/release", data={})
    assert forged.status_code == 403
    freed = browser.post(
        f"/agent/holds/{hold_id}/release", data={"csrf_token": csrf_token(english)}
    )
    assert freed.headers["location"] == f"/agent/holds?released={hold_id}"
    after = browser.get(freed.headers["location"]).text
    assert f'id="hold-{hold_id}"' not in after and "being sent" in after
    with ledger.db() as session:
        hold = session.get(Hold, hold_id)
        assert hold is not None and hold.released_by and hold.released_by.startswith("user ")


# -- with a real worker ---------------------------------------------------------------------


@pytest.mark.stack
@pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)
def test_the_worker_does_the_release_and_the_notice_goes_out(stack: Stack) -> None:
    """DELETE answers at once; the worker's ``notifier.release_hold`` sends the held notice."""
    acct = events.account(area=f"area-{secrets.token_hex(4)}", email=None)
    due = datetime.now(TAIPEI).date() - timedelta(days=10)
    hold = stack.client.post(
        "/v1/holds", headers=stack.producer,
        json={"scope": "account", "account_no": acct["account_no"], "reason": "dispute"},
    )  # fmt: skip
    assert hold.status_code == 422  # the account is not known yet: nothing to hold
    first = events.unpaid(acct, period="2026-10", due=due, level=1)
    first["type"] = "bill.issued"
    first.pop("level")
    assert stack.post(first).status_code == 202
    wait_until(lambda: _known(stack, acct["account_no"]), timeout=60, what="account stored")
    hold = stack.client.post(
        "/v1/holds", headers=stack.producer,
        json={"scope": "account", "account_no": acct["account_no"], "reason": "dispute"},
    )  # fmt: skip
    assert hold.status_code == 201, hold.text
    hold_id = hold.json()["id"]

    assert stack.post(events.unpaid(acct, period="2026-10", due=due, level=2)).status_code == 202
    wait_until(
        lambda: any(n.held_by == hold_id for n in _notices(stack, acct["account_no"])),
        timeout=60, what="the level-2 notice held",
    )  # fmt: skip

    released = stack.client.delete(f"/v1/holds/{hold_id}", headers=stack.producer)
    assert released.status_code == 200, released.text

    def told() -> bool:
        with stack.db() as session:
            done = session.get(Hold, hold_id)
            return done is not None and done.release_done_at is not None

    wait_until(told, timeout=60, what="the release done by the worker")
    active = [n for n in _notices(stack, acct["account_no"]) if n.status == "active"]
    assert [(n.level, n.held_by) for n in active] == [(2, None)]
    with stack.db() as session:
        sent = session.exec(select(Delivery).where(Delivery.notification_id == active[0].id)).all()
    assert {d.channel for d in sent} >= {"sms", "voice"}
    progress = stack.client.get(
        "/v1/holds", params={"account_no": acct["account_no"]}, headers=stack.producer
    ).json()
    assert progress[0]["release"]["notified"] == 1


def _known(stack: Stack, account_no: str) -> bool:
    with stack.db() as session:
        return session.get(Account, account_no) is not None


def _notices(stack: Stack, account_no: str) -> list[Notification]:
    with stack.db() as session:
        return list(
            session.exec(
                select(Notification)
                .where(Notification.account_no == account_no, Notification.type == "bill.unpaid")
                .order_by(col(Notification.id))
            )
        )
