"""Retention as calendar scenarios: deliveries, events, cases and accounts grow old.

Notices are sent for real (the sandbox providers) and the clock moves on by
passing ``now`` to the purge, as the beat job passes its runtime's clock; the
command runs on the wall clock, so its scenario dates rows back instead.
Retention is 90 days throughout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.schedules import crontab
from pydantic import ValidationError
from sqlmodel import col, select

from notifier.accounts.models import Account
from notifier.accounts.service import mark_email_invalid
from notifier.audit import service as audit
from notifier.db import utcnow
from notifier.deliveries.models import Delivery, DeliveryChange, Notification
from notifier.deliveries.service import record_change, timeline
from notifier.deliveries.stats import by_channel
from notifier.escalation.models import Escalation, EscalationAttempt
from notifier.events.models import Event
from notifier.flows.deliver import deliver_batch
from notifier.flows.retention import KINDS, PurgeReport, purge
from notifier.queues.celery_config import make_celery
from notifier.settings import Settings
from tests.support import events
from tests.support.ledger import Ledger
from tests.support.stack import need, postgres_database

DAY = timedelta(days=1)
SEP_20, NOV_20, NOV_21 = date(2026, 9, 20), date(2026, 11, 20), date(2026, 11, 21)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def book(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:  # fmt: skip
    """A ledger with a database of its own, quiet hours off (sends go out at any hour).

    Not the shared ``ledger``: a purge with the clock moved on reaches every
    row of its database, calendar scenarios' included.
    """
    folder = tmp_path_factory.mktemp(f"retention-{request.param}")
    if request.param == "sqlite":
        url, drop = f"sqlite:///{folder / 'retention.db'}", None
    else:
        need("PostgreSQL", "127.0.0.1", 5432)
        url, drop = postgres_database()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NOTIFIER_QUIET_HOURS", "off")
        book = Ledger(url, folder)
    yield book
    book.close()
    if drop is not None:
        drop()


# -- the scenario's steps ------------------------------------------------------------------------


def notify(book: Ledger, **account: Any) -> dict[str, Any]:
    """An unpaid-bill notice to a new account, sent on every channel the policy picks."""
    acct = events.account(area=book.new_area(), **account)
    book.post(events.unpaid(acct))
    send_all(book, acct["account_no"])
    return acct


def send_all(book: Ledger, account_no: str) -> None:
    """Run the worker's deliver step for each queued delivery, and for the fallbacks it starts."""
    with book.db() as session:
        pending = list(
            session.exec(
                select(Delivery.id).where(
                    Delivery.account_no == account_no, Delivery.status == "queued"
                )
            )
        )
    while pending:
        delivery_id = pending.pop()
        assert delivery_id is not None
        outcome = deliver_batch(book.runtime, [delivery_id])
        assert not outcome.later
        pending += [created for created, _ in outcome.enqueue]


def deliveries_of(book: Ledger, account_no: str) -> list[Delivery]:
    with book.db() as session:
        return list(
            session.exec(
                select(Delivery).where(Delivery.account_no == account_no).order_by(col(Delivery.id))
            )
        )


def timeline_of(book: Ledger, delivery_id: int | None) -> list[DeliveryChange]:
    assert delivery_id is not None
    with book.db() as session:
        return timeline(session, delivery_id)


def events_of(book: Ledger, account_no: str) -> list[Event]:
    with book.db() as session:
        return list(
            session.exec(
                select(Event).where(Event.account_no == account_no).order_by(col(Event.id))
            )
        )


def account(book: Ledger, account_no: str) -> Account:
    with book.db() as session:
        found = session.get(Account, account_no)
    assert found is not None
    return found


def purge_at(book: Ledger, now: datetime, **kw: Any) -> PurgeReport:
    """The beat job's purge, run at ``now``."""
    return purge(book.runtime.db, days=90, now=now, actor="test", **kw)


def date_back(book: Ledger, account_no: str, by: timedelta) -> None:
    """Make the account's notices, events and timelines ``by`` older than they are."""
    with book.db() as session:
        for delivery in session.exec(select(Delivery).where(Delivery.account_no == account_no)):
            delivery.created_at -= by
            delivery.updated_at -= by
            session.add(delivery)
            for change in timeline(session, delivery.id or 0):
                change.at -= by
                session.add(change)
        for note in session.exec(select(Notification).where(Notification.account_no == account_no)):
            note.created_at -= by
            session.add(note)
        for event in session.exec(select(Event).where(Event.account_no == account_no)):
            event.received_at -= by
            session.add(event)
        acct = session.get(Account, account_no)
        assert acct is not None
        acct.updated_at -= by
        session.add(acct)


# -- deliveries ----------------------------------------------------------------------------------


def test_a_delivery_91_days_old_keeps_its_story_but_not_the_notice(book: Ledger) -> None:
    acct = notify(book)
    before = deliveries_of(book, acct["account_no"])
    assert sorted(d.channel for d in before) == ["email", "push", "sms"]
    assert {d.status for d in before} <= {"delivered", "sent"}  # email ends at "sent"
    stories = {d.id: [(c.status, c.at) for c in timeline_of(book, d.id)] for d in before}

    purge_at(book, utcnow() + 91 * DAY)

    after = deliveries_of(book, acct["account_no"])
    for old, new in zip(before, after, strict=True):
        assert (new.content, new.recipients) == ({"purged": True}, [])
        assert old.content["body"] and old.recipients
        kept = ("id", "status", "channel", "provider", "provider_id", "attempts",
                "address_masked", "created_at", "notification_id")  # fmt: skip
        assert [getattr(new, k) for k in kept] == [getattr(old, k) for k in kept]
        assert new.provider_id and new.purged_at is not None
        assert [(c.status, c.at) for c in timeline_of(book, new.id)] == stories[new.id]
    sms = next(d for d in after if d.channel == "sms")
    assert sms.address_masked == "+886 912 ***678"  # already masked: kept to tell whom


def test_at_89_days_nothing_goes_and_a_delivery_still_owed_never_does(book: Ledger) -> None:
    young, old = notify(book), notify(book)
    paper = notify(book, phone=None, email=None, push_tokens=None)  # a postcard: queued for print
    [postcard] = deliveries_of(book, paper["account_no"])
    assert (postcard.channel, postcard.status) == ("postcard", "queued")
    now = utcnow()
    date_back(book, old["account_no"], 2 * DAY)

    purge_at(book, now + 89 * DAY)  # old is 91 days old then, young 89

    assert all(d.purged_at for d in deliveries_of(book, old["account_no"]))
    assert not any(d.purged_at for d in deliveries_of(book, young["account_no"]))
    assert all(d.content.get("body") for d in deliveries_of(book, young["account_no"]))

    purge_at(book, now + 200 * DAY)

    [still] = deliveries_of(book, paper["account_no"])
    assert (still.status, still.purged_at) == ("queued", None)
    assert (still.content, still.recipients) == (postcard.content, postcard.recipients)
    [event] = events_of(book, paper["account_no"])
    assert event.purged_at is None and event.payload["account"]["name"] == "王小明"


def test_the_dashboard_counts_the_same_after_a_purge(book: Ledger) -> None:
    notify(book)
    notify(book, phone="+886900000001")  # the sandbox's invalid number: SMS fails, voice skipped
    since, until = utcnow() - DAY, utcnow() + DAY
    with book.db() as session:
        before = by_channel(session, since=since, until=until)

    report = purge_at(book, utcnow() + 91 * DAY)

    with book.db() as session:
        after = by_channel(session, since=since, until=until)
    assert after == before
    assert before.total >= 6 and report.deliveries >= 5
    assert "failed" in before.series


def test_what_a_provider_said_about_the_number_is_masked_in_the_timeline(book: Ledger) -> None:
    acct = notify(book, phone="+886900000001")
    [sms] = [d for d in deliveries_of(book, acct["account_no"]) if d.channel == "sms"]
    assert sms.status == "failed"
    # Twilio's words for error 21211 quote the number; SMTP lists the refused addresses.
    said = "The 'To' number +886900000001 is not a valid phone number."
    with book.db() as session:
        record_change(session, sms.id or 0, "failed", error=said, code="21211",
                      refused={acct["email"]: "550 5.1.1 no such user"})  # fmt: skip
        row = session.get(Delivery, sms.id)
        assert row is not None
        row.last_error = f"21211: {said}"
        session.add(row)

    report = purge_at(book, utcnow() + 91 * DAY)

    entries = timeline_of(book, sms.id)
    assert entries[-1].detail == {
        "error": "The 'To' number +886 900 ***001 is not a valid phone number.",
        "code": "21211",
        "refused": 1,
    }
    text = json.dumps([e.detail for e in entries], ensure_ascii=False)
    assert "900000001" not in text and acct["email"] not in text
    [purged] = [d for d in deliveries_of(book, acct["account_no"]) if d.id == sms.id]
    assert purged.last_error == f"21211: {said.replace('+886900000001', '+886 900 ***001')}"
    assert report.timeline_entries >= 1


# -- events, cases and accounts ------------------------------------------------------------------


def test_an_old_event_keeps_its_facts_but_not_who_and_where(book: Ledger) -> None:
    acct = notify(book)
    [before] = events_of(book, acct["account_no"])

    purge_at(book, utcnow() + 91 * DAY)

    [after] = events_of(book, acct["account_no"])
    assert after.payload["account"] == {
        "account_no": acct["account_no"], "language": "zh-TW", "area": acct["area"],
    }  # fmt: skip
    for kept in ("event_id", "type", "occurred_at", "bill", "level"):
        assert after.payload[kept] == before.payload[kept]
    assert (after.event_id, after.status, after.purged_at is not None) == (
        before.event_id, "processed", True,
    )  # fmt: skip
    text = json.dumps(after.payload, ensure_ascii=False)
    assert "王小明" not in text and "+886912345678" not in text and acct["email"] not in text


def test_closed_cases_keep_their_outcomes_and_lose_their_notes(book: Ledger) -> None:
    area = book.new_area()
    visited, promising = events.account(area=area, phone=None), events.account(area=area)
    for acct in (visited, promising):
        book.issue(acct, "2026-07", SEP_20)
        book.issue(acct, "2026-09", NOV_20)
    book.sweep(NOV_20)
    closed = book.open_case(visited["account_no"])
    still_open = book.open_case(promising["account_no"])
    assert closed is not None and closed.id and still_open is not None and still_open.id
    book.record(closed.id, "nobody_home", today=NOV_20, note="his mother: call 0912-345-678")
    book.record(closed.id, "notice_delivered", today=NOV_21, note="says the meter is wrong")
    book.record(still_open.id, "promised", today=NOV_20, promise_date=date(2026, 11, 25),
                note="pays at the shop on Zhongzheng Rd")  # fmt: skip

    report = purge_at(book, utcnow() + 91 * DAY)

    with book.db() as session:
        case = session.get(Escalation, closed.id)
        attempts = session.exec(
            select(EscalationAttempt)
            .where(EscalationAttempt.escalation_id == closed.id)
            .order_by(col(EscalationAttempt.id))
        ).all()
        [promise] = session.exec(
            select(EscalationAttempt).where(EscalationAttempt.escalation_id == still_open.id)
        ).all()
    assert case is not None and (case.status, case.outcome, case.attempts) == (
        "done", "notice_delivered", 2,
    )  # fmt: skip
    assert [(a.outcome, a.note) for a in attempts] == [
        ("nobody_home", None), ("notice_delivered", None),
    ]  # fmt: skip
    assert promise.note == "pays at the shop on Zhongzheng Rd"  # the case is still being worked
    assert report.notes >= 2


def test_an_idle_account_loses_its_contact_points_until_the_next_event(book: Ledger) -> None:
    idle, owing = events.account(area=book.new_area()), events.account(area=book.new_area())
    bill = book.issue(idle, "2026-07", SEP_20)
    book.pay(idle, bill, on=SEP_20)
    book.issue(owing, "2026-07", SEP_20)
    now = utcnow()

    purge_at(book, now + 89 * DAY)
    assert account(book, idle["account_no"]).phone == idle["phone"]  # an event 89 days ago

    purge_at(book, now + 91 * DAY)
    cleared = account(book, idle["account_no"])
    assert (cleared.name, cleared.phone, cleared.email, cleared.address, cleared.push_tokens) == (
        None, None, None, None, [],
    )  # fmt: skip
    assert (cleared.language, cleared.area) == ("zh-TW", idle["area"])
    kept = account(book, owing["account_no"])  # a bill still unpaid: current business
    assert (kept.name, kept.phone) == ("王小明", owing["phone"])

    book.post(events.abnormal_usage(idle))  # the producer sends the account again
    assert account(book, idle["account_no"]).phone == idle["phone"]


def test_an_idle_accounts_bounced_email_goes_with_its_contact_points(book: Ledger) -> None:
    idle = events.account(area=book.new_area())
    book.pay(idle, book.issue(idle, "2026-07", SEP_20), on=SEP_20)
    now = utcnow()
    with book.runtime.db.session() as session:
        assert mark_email_invalid(
            session, idle["account_no"], idle["email"], now=now, reason="bounce 5.1.1"
        )

    purge_at(book, now + 91 * DAY)

    cleared = account(book, idle["account_no"])
    assert (cleared.invalid_email, cleared.email_invalid_at, cleared.email_invalid_reason) == (
        None, None, None,
    )  # fmt: skip


# -- runs ----------------------------------------------------------------------------------------


def test_a_second_run_purges_nothing_more_and_each_run_is_audited(book: Ledger) -> None:
    notify(book)
    later = utcnow() + 120 * DAY

    first = purge_at(book, later, chunk=2)  # keyset paging across chunks
    second = purge_at(book, later)

    assert first.deliveries >= 3 and first.events >= 1 and first.timeline_entries >= 0
    assert second.counts() == dict.fromkeys(KINDS, 0)
    with book.db() as session:
        entries = audit.list_entries(session, action="retention.purge", limit=2).entries
    assert [e.detail for e in reversed(entries)] == [
        {"cutoff": first.cutoff.isoformat(), **first.counts()},
        {"cutoff": second.cutoff.isoformat(), **second.counts()},
    ]
    assert {e.actor for e in entries} == {"test"}


def test_finished_producer_callbacks_go_and_owed_ones_stay(book: Ledger) -> None:
    from notifier.auth import keys
    from notifier.webhooks.models import ProducerCallback

    with book.db() as session:
        key, _ = keys.create_key(session, role="producer", name="billing")
        assert key.id is not None
        old = utcnow() - 100 * DAY
        rows = [
            ProducerCallback(key_id=key.id, type="delivery.delivered", status=status, created_at=at)
            for status, at in (("sent", old), ("failed", old), ("pending", old), ("sent", utcnow()))
        ]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]

    report = purge_at(book, utcnow())

    with book.db() as session:
        left = session.exec(
            select(ProducerCallback.status).where(col(ProducerCallback.id).in_(ids))
        ).all()
    assert report.callbacks >= 2
    assert sorted(left) == ["pending", "sent"]  # still owed; and one not old enough


def test_a_run_killed_half_way_keeps_its_chunks_and_the_next_one_finishes(book: Ledger) -> None:
    accounts = [notify(book) for _ in range(2)]
    later = utcnow() + 150 * DAY

    class Killed(Exception):
        pass

    def kill_after_one_chunk(kind: str, done: int, total: int) -> None:
        if kind == "deliveries" and done:
            raise Killed

    with pytest.raises(Killed):
        purge_at(book, later, chunk=2, progress=kill_after_one_chunk)
    mine = [d for a in accounts for d in deliveries_of(book, a["account_no"])]
    assert len(mine) == 6 and sum(d.purged_at is None for d in mine) >= 4

    purge_at(book, later)

    mine = [d for a in accounts for d in deliveries_of(book, a["account_no"])]
    assert all(d.purged_at is not None and d.recipients == [] for d in mine)


# -- the command, the schedule, the setting ------------------------------------------------------


def notifier(book: Ledger, *args: str) -> subprocess.CompletedProcess[str]:
    settings = book.runtime.settings
    env = {
        **os.environ,
        "NOTIFIER_DATABASE_URL": settings.resolved_database_url,
        "NOTIFIER_DATA_DIR": str(settings.data_dir),
        "NOTIFIER_POLICY_FILE": str(settings.policy_file),
    }
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def counts(output: str) -> dict[str, int]:
    return {kind: int(n) for kind, n in re.findall(r"^  (\w[\w ]*?) +(\d+)$", output, re.M)}


def test_notifier_purge_dry_run_counts_and_changes_nothing(book: Ledger) -> None:
    acct = notify(book)
    date_back(book, acct["account_no"], 100 * DAY)

    def state() -> list[Any]:
        with book.db() as session:
            audited = len(audit.list_entries(session, action="retention.purge", limit=1000).entries)
        return [
            [(d.content, d.recipients, d.purged_at) for d in deliveries_of(book, acct["account_no"])],
            [e.payload for e in events_of(book, acct["account_no"])],
            audited,
        ]  # fmt: skip

    before = state()
    dry = notifier(book, "purge", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run, nothing changed" in dry.stdout
    assert counts(dry.stdout)["deliveries"] >= 3 and counts(dry.stdout)["events"] >= 1
    assert set(counts(dry.stdout)) == set(KINDS)
    assert state() == before

    done = notifier(book, "purge")
    assert done.returncode == 0, done.stderr
    assert counts(done.stdout) == counts(dry.stdout)
    assert all(d.purged_at is not None for d in deliveries_of(book, acct["account_no"]))
    with book.db() as session:
        [last] = audit.list_entries(session, action="retention.purge", limit=1).entries
    assert last.actor == "cli" and last.detail is not None and last.detail["deliveries"] >= 3

    refused = notifier(book, "purge", "--days", "0")
    assert refused.returncode != 0 and "--days" in refused.stderr


@pytest.mark.parametrize("days", ["0", "-5"])
def test_a_retention_of_no_days_is_refused_by_name(
    days: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_RETENTION_DAYS", days)
    with pytest.raises(ValidationError, match="NOTIFIER_RETENTION_DAYS must be 1 or more"):
        Settings()


def test_beat_purges_daily_at_half_past_three_on_the_maintenance_queue(tmp_path: Any) -> None:
    app = make_celery(Settings(data_dir=tmp_path))
    entry = app.conf.beat_schedule["retention-purge"]
    assert entry["task"] == "notifier.purge"
    assert entry["schedule"] == crontab(hour=3, minute=30)
    assert app.conf.task_routes["notifier.purge"] == {"queue": "maintenance"}
    assert Settings.model_fields["retention_days"].default == 90


def test_print_batches_of_days_past_retention_are_deleted_with_their_files(
    book: Ledger, tmp_path: Path
) -> None:
    now = datetime(2027, 3, 1, 2, tzinfo=UTC)  # 90 days: the cutoff is 1 Dec 2026, 02:00 UTC
    print_dir = tmp_path / "print"
    for day in ("2026-11-30", "2026-12-01", "2027-02-28"):  # one day before the cutoff's
        folder = print_dir / day
        folder.mkdir(parents=True)
        (folder / f"PC-{day}.pdf").write_bytes(b"%PDF-1.7 names and addresses")
        (folder / f"PC-{day}.csv").write_text("account_no,address\n")
    (print_dir / "README").write_text("not a day: left alone")

    counted = purge_at(book, now, dry_run=True, print_dir=print_dir)
    assert counted.print_files == 2 and (print_dir / "2026-11-30").is_dir()

    report = purge_at(book, now, print_dir=print_dir)

    assert report.print_files == 2
    assert sorted(p.name for p in print_dir.iterdir()) == ["2026-12-01", "2027-02-28", "README"]
