"""Proof of service (issue 18, item 3): an account's service record, before and after the purge.

One account, two bills on the calendar: B07 falls due on 20 Sep 2026, B09 on
20 Nov. A level-2 notice about B07 goes out on 5 Oct by SMS (the sandbox
reports it delivered) and by email (sent, and no receipt ever comes); the case
for B07 opens on 20 Nov as a visit (the account is vulnerable), and on 25 Nov
the field agent records ``notice_delivered``. A level-1 notice about B09 goes
out on 23 Nov by email alone (the customer opted out of SMS meanwhile): never
proven served. The sandbox outboxes hold what each provider received.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlmodel import col, select

from notifier.app import create_app
from notifier.auth import keys
from notifier.db import utcnow
from notifier.deliveries.models import Delivery, Notification
from notifier.deliveries.service import record_change
from notifier.escalation import service as cases
from notifier.escalation.proof import served
from notifier.escalation.record import service_record
from notifier.flows.deliver import deliver_batch
from notifier.flows.postcards import print_postcards
from notifier.flows.retention import purge
from tests.support import events
from tests.support.ledger import Ledger, opened

TAIPEI = ZoneInfo("Asia/Taipei")
SEP_20, OCT_5, NOV_20 = date(2026, 9, 20), date(2026, 10, 5), date(2026, 11, 20)
NOV_23, NOV_25 = date(2026, 11, 23), date(2026, 11, 25)
NAME, PHONE, ADDRESS = "王小明", "+886912345678", "苗栗縣頭份市中正路1號"


def taipei(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=TAIPEI)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def book(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ledger]:
    """A ledger with a database of its own: the purge here reaches every row of it."""
    folder = tmp_path_factory.mktemp(f"service-record-{request.param}")
    with opened(request.param, folder) as book:
        yield book


class Calendar:
    def __init__(self, book: Ledger) -> None:
        self.book = book
        self.now = taipei(OCT_5)
        book.runtime.clock = lambda: self.now.astimezone(UTC)

    def on(self, day: date, hour: int = 10) -> None:
        self.now = taipei(day, hour)


@pytest.fixture
def calendar(book: Ledger) -> Iterator[Calendar]:
    yield Calendar(book)
    book.runtime.clock = utcnow


def post_unpaid(
    book: Ledger, acct: dict[str, Any], bill: dict[str, Any], level: int, on: date
) -> None:
    event = events.unpaid(acct, level=level)
    event["bill"], event["occurred_at"] = bill, taipei(on).isoformat()
    book.post(event)


def send_all(book: Ledger, account_no: str) -> None:
    """The worker's deliver step for every queued delivery of the account."""
    with book.db() as session:
        ids = [
            i
            for i in session.exec(
                select(Delivery.id).where(
                    Delivery.account_no == account_no, Delivery.status == "queued"
                )
            )
            if i is not None
        ]
    due_now(book, ids)
    for delivery_id in ids:
        assert not deliver_batch(book.runtime, [delivery_id]).later


def due_now(book: Ledger, ids: list[int]) -> None:
    # Rows are stamped by the wall clock; on the scenario's calendar they are due now.
    with book.db() as session:
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(available_at=book.runtime.clock())
        )


def outbox(book: Ledger, channel: str, delivery_id: int) -> dict[str, Any]:
    """What the sandbox provider of ``channel`` received for ``delivery_id``."""
    path = book.runtime.settings.sandbox_dir / f"{channel}.jsonl"
    [sent] = [
        line
        for line in map(json.loads, path.read_text().splitlines())
        if line["delivery_id"] == delivery_id
    ]
    return dict(sent)


def unpaid_notices(book: Ledger, account_no: str) -> list[tuple[Notification, list[Delivery]]]:
    with book.db() as session:
        found = session.exec(
            select(Notification)
            .where(Notification.account_no == account_no, Notification.type == "bill.unpaid")
            .order_by(col(Notification.id))
        ).all()
        return [
            (
                n,
                list(
                    session.exec(
                        select(Delivery)
                        .where(Delivery.notification_id == n.id)
                        .order_by(col(Delivery.id))
                    )
                ),
            )
            for n in found
        ]


def key(book: Ledger, role: keys.Role, agent_id: int | None = None) -> dict[str, str]:
    with book.db() as session:
        _, secret = keys.create_key(session, role=role, name=f"test {role}", agent_id=agent_id)
    return {"Authorization": f"Bearer {secret}"}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def squeezed(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def disputed(book: Ledger, calendar: Calendar) -> dict[str, Any]:
    """The account of the module's story, told on the calendar; what each provider got."""
    area = book.new_area()
    field_agent = book.add_agent(area, "field", name="陳志明")
    acct = events.account(
        area=area, name=NAME, phone=PHONE, address=ADDRESS, push_tokens=None, vulnerable=True,
        opt_outs=["push", "voice"],
    )  # fmt: skip
    b07 = book.issue(acct, "2026-07", SEP_20)
    b09 = book.issue(acct, "2026-09", NOV_20, amount=2140)

    post_unpaid(book, acct, b07, 2, OCT_5)
    send_all(book, acct["account_no"])

    calendar.on(NOV_20, 7)
    book.sweep(NOV_20)
    case = book.open_case(acct["account_no"])
    assert case is not None and case.id is not None and case.kind == "visit"

    calendar.on(NOV_23)
    post_unpaid(book, {**acct, "opt_outs": ["push", "voice", "sms"]}, b09, 1, NOV_23)
    send_all(book, acct["account_no"])

    calendar.on(NOV_25, 15)
    book.record(
        case.id,
        "notice_delivered",
        today=NOV_25,
        actor=cases.Actor(name="陳志明", agent_id=field_agent),
        at=calendar.now,
        note=f"交給{NAME}本人，電話 {PHONE}",
    )
    [(level_2, (sms, email)), (level_1, (email_2,))] = unpaid_notices(book, acct["account_no"])
    assert (sms.channel, sms.status, email.channel, email.status) == (
        "sms", "delivered", "email", "sent",
    )  # fmt: skip
    assert (email_2.channel, email_2.status) == ("email", "sent")
    return {
        "acct": acct, "b07": b07, "b09": b09, "case_id": case.id, "agent_id": field_agent,
        "level_2": level_2, "level_1": level_1, "sms": sms, "email": email, "email_2": email_2,
        "got": {d.id: outbox(book, d.channel, d.id or 0) for d in (sms, email, email_2)},
    }  # fmt: skip


def client(book: Ledger) -> TestClient:
    # Not entered: the app's lifespan would close the module's runtime when it ends.
    return TestClient(create_app(runtime=book.runtime))


def record_json(book: Ledger, account_no: str) -> dict[str, Any]:
    answer = client(book).get(
        f"/v1/accounts/{account_no}/service-record", headers=key(book, "supervisor")
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def the_personal_data(disputed: dict[str, Any]) -> list[str]:
    acct = disputed["acct"]
    texts = [m["body"] for m in disputed["got"].values()]
    return [NAME, PHONE, PHONE[4:], acct["email"], ADDRESS, "中正路", *texts, "本人"]


# -- the record -----------------------------------------------------------------------------------


def test_the_record_lists_each_notice_and_channel_with_the_hash_of_what_the_provider_got(
    book: Ledger, disputed: dict[str, Any]
) -> None:
    record = record_json(book, disputed["acct"]["account_no"])
    notices = {n["notification_id"]: n for n in record["notices"]}
    level_2 = notices[disputed["level_2"].id]
    level_1 = notices[disputed["level_1"].id]
    sms, email = (disputed[name] for name in ("sms", "email"))
    got = disputed["got"]

    assert (level_2["type"], level_2["level"], level_2["bill_no"]) == (
        "bill.unpaid", 2, disputed["b07"]["bill_no"],
    )  # fmt: skip
    by_channel = {c["channel"]: c for c in level_2["channels"]}
    assert set(by_channel) == {"sms", "email"}
    # The SMS: the hash is of the very text the provider was handed.
    sms_row = by_channel["sms"]
    assert sms_row["content_sha256"] == sha256(got[sms.id]["body"])
    assert sms_row["provider_id"] == got[sms.id]["provider_id"]
    assert [e["status"] for e in sms_row["timeline"]][-1] == "delivered"
    assert (sms_row["template"], len(sms_row["template_sha256"])) == (
        "bill.unpaid/sms.zh-TW.j2", 64,
    )  # fmt: skip
    # The email: its parts as one canonical JSON object (the MIME headers vary per send).
    parts = {"subject": got[email.id]["subject"], "body": got[email.id]["body"]}
    parts["html"] = email.content["html"]
    canonical = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    email_row = by_channel["email"]
    assert email_row["content_sha256"] == sha256(canonical)
    assert email_row["status"] == "sent"
    assert "delivered" not in [e["status"] for e in email_row["timeline"]]
    # What the notice stated: both bills, B07 overdue at NT$1,830, B09 not yet due.
    stated = {b["bill_no"]: b for b in sms_row["stated"]}
    assert stated[disputed["b07"]["bill_no"]] == {
        "bill_no": disputed["b07"]["bill_no"], "amount": 1830, "paid": 0,
        "due_date": "2026-09-20", "overdue": True,
    }  # fmt: skip
    assert stated[disputed["b09"]["bill_no"]]["overdue"] is False
    # Served by the SMS receipt, the earliest proof (the visit came later).
    assert level_2["served"]["how"] == "delivered"
    assert level_2["served"]["channel"] == "sms"
    assert level_2["served"]["reference"] == got[sms.id]["provider_id"]
    # The B09 notice went by email only: sent, never proven served.
    assert [c["channel"] for c in level_1["channels"]] == ["email"]
    assert level_1["served"] is None
    # The visit: the agent's outcome, its time and agent.
    [case] = record["cases"]
    assert (case["case_id"], case["kind"], case["bills"]) == (
        disputed["case_id"], "visit", [disputed["b07"]["bill_no"]],
    )  # fmt: skip
    [outcome] = case["outcomes"]
    assert (outcome["outcome"], outcome["agent"], outcome["agent_id"]) == (
        "notice_delivered", "陳志明", disputed["agent_id"],
    )  # fmt: skip
    assert datetime.fromisoformat(outcome["at"]) == taipei(NOV_25, 15)
    assert case["notice_served"]["how"] == "notice_delivered"
    text = json.dumps(record, ensure_ascii=False)
    for personal in the_personal_data(disputed):
        assert personal not in text


def test_served_takes_a_receipt_never_a_send_without_one(
    book: Ledger, disputed: dict[str, Any]
) -> None:
    with book.db() as session:
        level_2 = served(session, disputed["level_2"].id)
        # The receipt sweep gave up waiting on the B09 email: unknown is not served.
        email = session.get(Delivery, disputed["email_2"].id)
        assert email is not None
        email.status = "unknown"
        session.add(email)
        record_change(session, disputed["email_2"].id, "unknown", reason="no receipt in time")
        session.flush()
        level_1 = served(session, disputed["level_1"].id)
        # Without its SMS, the B07 notice is not served: the visit proves the visit notice
        # it handed over (the case's own line), not an SMS the customer may never have read.
        sms = session.get(Delivery, disputed["sms"].id)
        assert sms is not None
        sms.notification_id = disputed["level_1"].id
        session.add(sms)
        session.flush()
        by_visit = served(session, disputed["level_2"].id)
        session.rollback()
    assert level_2 is not None and (level_2.how, level_2.channel) == ("delivered", "sms")
    assert level_1 is None
    assert by_visit is None


def test_the_purge_keeps_the_record_whole_and_it_never_held_personal_data(
    book: Ledger, disputed: dict[str, Any], calendar: Calendar
) -> None:
    account_no = disputed["acct"]["account_no"]
    with book.db() as session:
        before = service_record(session, account_no, now=calendar.now)

    # Rows are stamped by the wall clock; a purge 91 days on reaches all of this account's.
    report = purge(book.runtime.db, days=90, now=utcnow() + timedelta(days=91), actor="test")

    assert report.deliveries >= 3 and report.notes >= 1
    with book.db() as session:
        after = service_record(session, account_no, now=calendar.now)
        [sms] = session.exec(select(Delivery).where(Delivery.id == disputed["sms"].id)).all()
        assert sms.content == {"purged": True} and sms.recipients == []
    assert after == before
    record = record_json(book, account_no)
    hashes = [c["content_sha256"] for n in record["notices"] for c in n["channels"]]
    assert hashes == [
        sha256(disputed["got"][disputed["sms"].id]["body"]),
        before.notices[-2].channels[1].content_sha256,
        before.notices[-1].channels[0].content_sha256,
    ]
    assert all(hashes)
    text = json.dumps(record, ensure_ascii=False)
    for personal in the_personal_data(disputed):
        assert personal not in text


# -- the printed record -------------------------------------------------------------------------


def test_the_printed_record_says_what_the_json_says_in_chinese_and_english(
    book: Ledger, disputed: dict[str, Any], tmp_path: Path
) -> None:
    account_no = disputed["acct"]["account_no"]
    supervisor = key(book, "supervisor")
    record = record_json(book, account_no)
    for language in ("zh-TW", "en"):
        answer = client(book).get(
            f"/v1/accounts/{account_no}/service-record",
            params={"format": "pdf", "language": language},
            headers=supervisor,
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/pdf"
        pdf = PdfReader(io.BytesIO(answer.content))
        text = squeezed("".join(page.extract_text() for page in pdf.pages))
        for notice in record["notices"]:
            for channel in notice["channels"]:
                assert channel["content_sha256"] in text
                assert channel["provider_id"] in text
        assert account_no in text and disputed["b07"]["bill_no"] in text
        assert ("已證明送達" if language == "zh-TW" else "Served:deliveryreceipt") in text
        assert ("未證明送達" if language == "zh-TW" else "Notprovenserved") in text
        assert "陳志明" in text
        for personal in the_personal_data(disputed):
            assert squeezed(personal) not in text
        (tmp_path / f"record-{language}.pdf").write_bytes(answer.content)
        dark = inked(tmp_path / f"record-{language}.pdf", tmp_path / f"record-{language}")
        # Glyphs and rules ink a few percent of a page; a blank page none, boxes far more.
        assert 0.01 < dark < 0.25, dark


def inked(pdf: Path, prefix: Path) -> float:
    """Page 1 rendered to PNG (kept beside the test to be looked at); its share of dark pixels."""
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed")
    subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-r", "80", "-png", str(pdf), str(prefix)],
                   check=True)  # fmt: skip
    subprocess.run(
        ["pdftoppm", "-f", "1", "-l", "1", "-r", "60", "-gray", str(pdf), str(prefix)], check=True
    )
    [image] = prefix.parent.glob(f"{prefix.name}*.pgm")
    data = image.read_bytes()
    header, pixels = data.split(b"255\n", 1)
    assert header.startswith(b"P5")
    return sum(1 for value in pixels if value < 128) / len(pixels)


# -- a postcard in a print batch -------------------------------------------------------------------


def test_a_postcard_in_a_print_batch_is_served_by_the_batch_and_keeps_its_hashes(
    book: Ledger, calendar: Calendar
) -> None:
    acct = events.account(area=book.new_area(), phone=None, email=None, push_tokens=None)
    bill = book.issue(acct, "2026-09", NOV_20)
    calendar.on(NOV_23)
    post_unpaid(book, acct, bill, 1, NOV_23)
    [(notice, (card,))] = unpaid_notices(book, acct["account_no"])
    assert card.channel == "postcard" and card.id is not None
    due_now(book, [card.id])

    # Tomorrow's batch: a card queued after today's 16:00 cut-off waits for it (the test may
    # run at any hour).
    tomorrow = utcnow().astimezone(TAIPEI).date() + timedelta(days=1)
    report = print_postcards(book.runtime, day=tomorrow)

    assert report is not None
    with book.db() as session:
        proof = served(session, notice.id or 0)
        record = service_record(session, acct["account_no"], now=calendar.now)
    assert proof is not None
    assert (proof.how, proof.channel, proof.reference) == ("posted", "postcard", report.batch_id)
    [row] = record.notices[0].channels
    sent = [e for e in row.timeline if e.status == "sent"]
    assert [(e.batch, e.pdf_sha256) for e in sent] == [
        (report.batch_id, hashlib.sha256(report.pdf.read_bytes()).hexdigest())
    ]
    assert row.content_sha256 == sha256(card.content["body"])
    assert row.template == "bill.unpaid/postcard.zh-TW.j2"


# -- who may read it ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["agent", "ops", "producer"])
def test_only_supervisors_read_a_service_record(
    book: Ledger, disputed: dict[str, Any], role: keys.Role
) -> None:
    account_no = disputed["acct"]["account_no"]
    headers = key(book, role, disputed["agent_id"] if role == "agent" else None)
    for params in ({}, {"format": "pdf"}):
        answer = client(book).get(
            f"/v1/accounts/{account_no}/service-record", params=params, headers=headers
        )
        assert answer.status_code == 403, answer.text


def test_an_unknown_account_is_a_404_and_a_bad_format_a_422_naming_it(
    book: Ledger, disputed: dict[str, Any]
) -> None:
    supervisor = key(book, "supervisor")
    path = "/v1/accounts/{}/service-record"
    unknown = client(book).get(path.format(events.new_account_no()), headers=supervisor)
    assert unknown.status_code == 404
    account_no = disputed["acct"]["account_no"]
    for params, field in (({"format": "docx"}, "format"), ({"language": "fr"}, "language")):
        answer = client(book).get(path.format(account_no), params=params, headers=supervisor)
        assert answer.status_code == 422
        assert field in json.dumps(answer.json())
