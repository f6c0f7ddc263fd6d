"""Email bounces through the whole service: the real SMTP adapter sends with a VERP address,
the SMTP simulator answers for a dead (or slow) domain with a DSN as a real MTA would, and
the bounce receiver applies it.

One stack per database (SQLite with the filesystem broker, PostgreSQL with Redis) runs
its worker against the simulators; the receiver runs in the test process on the stack's
settings, and the simulator sends its DSNs there (standing in for the bounce domain's MX).
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from notifier.accounts.models import Account
from notifier.auth import keys
from notifier.bounces import verp
from notifier.cli.bounce_receiver import BounceReceiver
from notifier.deliveries.models import Delivery
from notifier.escalation import proof
from notifier.events.models import Event
from notifier.flows.process_event import process_events
from notifier.providers.simulated import Simulators
from notifier.webhooks.models import ProducerCallback, ProducerEndpoint
from tests.support import events
from tests.support.stack import Stack, build_stack, wait_until

BOUNCE_DOMAIN = "bounces.localhost"
REPORTS = Path(__file__).resolve().parents[1] / "unit" / "bounces" / "reports"


@pytest.fixture(scope="module", params=["sqlite-filesystem", "postgres-redis"])
def bouncing(
    request: pytest.FixtureRequest,
    simulators: Simulators,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, BounceReceiver]]:
    env = {
        **simulators.env,
        "NOTIFIER_PROVIDERS": "{}",  # credentials decide: the real adapters
        "NOTIFIER_BOUNCES__DOMAIN": BOUNCE_DOMAIN,
        "NOTIFIER_CALLBACK_KEY": "a-key-for-the-bounce-tests",
    }
    name = f"{request.param}-bounces"
    stack = build_stack(name, tmp_path_factory.mktemp(name), env)
    receiver = BounceReceiver(stack.runtime, host="127.0.0.1", port=0)
    simulators.smtp.bounce_to = receiver.start()
    yield stack, receiver
    simulators.smtp.bounce_to = None
    receiver.stop()
    stack.close()


def an_email_only_account(domain: str) -> dict[str, Any]:
    acct = events.account(phone=None, push_tokens=None)
    acct["email"] = f"c{acct['account_no']}@{domain}"
    return acct


def dsn_to(simulators: Simulators, bounce_address: str) -> int:
    """The index of the DSN the simulator sent to ``bounce_address``."""

    def found() -> list[int]:
        return [i for i, (to, _) in enumerate(simulators.smtp.dsns) if to == bounce_address]

    [index] = wait_until(found, timeout=60, what=f"a DSN to {bounce_address}")
    return index


def dsn_entries(stack: Stack, delivery_id: int | None) -> list[tuple[str, dict[str, Any]]]:
    return [(s, d) for s, d in stack.timeline(delivery_id) if d.get("report") == "dsn"]


def producer_with_a_callback_url(stack: Stack) -> tuple[int, dict[str, str]]:
    """A producer key with a callback URL (that nothing answers: the callbacks stay owed)."""
    with stack.db() as session:
        key, secret = keys.create_key(session, role="producer", name="billing with callbacks")
        assert key.id is not None
        session.add(ProducerEndpoint(key_id=key.id, url="http://127.0.0.1:9/cb", secret="s"))
    return key.id, {"Authorization": f"Bearer {secret}"}


def test_a_dead_address_bounces_the_email_marks_it_and_falls_back_once(
    bouncing: tuple[Stack, BounceReceiver], simulators: Simulators
) -> None:
    stack, _ = bouncing
    key_id, producer = producer_with_a_callback_url(stack)
    acct = an_email_only_account("dead.example")
    answer = stack.client.post("/v1/events", json=events.unpaid(acct), headers=producer)
    assert answer.status_code == 202, answer.text

    email, card = stack.reach(acct["account_no"], [("email", "undelivered"), ("postcard", "sent")])

    envelope = next(
        e for e in simulators.smtp.envelopes if acct["email"] in e.rcpt_tos
    )  # the mail went out from its own bounce address
    assert envelope.mail_from.startswith("bounces+")
    assert envelope.mail_from.endswith(f"@{BOUNCE_DOMAIN}")
    assert card.fallback_of == email.id
    [(status, entry)] = dsn_entries(stack, email.id)
    assert (status, entry["action"], entry["dsn_status"]) == ("undelivered", "failed", "5.1.1")
    assert acct["email"] not in str(entry)  # masked in the timeline
    with stack.db() as session:
        account = session.get(Account, acct["account_no"])
        assert account is not None
        assert account.invalid_email == acct["email"]
        assert account.email_invalid_reason == "bounce 5.1.1"
        owed = session.exec(select(ProducerCallback).where(ProducerCallback.key_id == key_id))
        told = {(c.type, c.body.get("delivery_id")) for c in owed}
        # The service record: the printed postcard may prove the notice, the email never.
        proven = proof.proofs(session, email.notification_id)
    # The producer hears of the bounce as of any undelivered notice, and of the address.
    assert ("delivery.undelivered", email.id) in told
    assert ("account.contact_invalid", None) in told
    assert [p.channel for p in proven] == ["postcard"]
    shown = stack.client.get(f"/v1/accounts/{acct['account_no']}", headers=stack.ops).json()
    assert (shown["email_bounced"], shown["email"]) == ("bounce 5.1.1", "c***@dead.example")

    # The same DSN again, as an MTA that lost our 250 would send it: nothing more happens.
    reply = simulators.smtp.resend_dsn(dsn_to(simulators, envelope.mail_from))
    assert reply.startswith("250") and "duplicate" in reply
    assert len(dsn_entries(stack, email.id)) == 1
    assert len(stack.deliveries(acct["account_no"])) == 2  # one fallback, not two

    # The next notice skips the address, as routing skips a wrong phone.
    stack.client.post("/v1/events", json=events.unpaid(acct, level=2), headers=producer)
    later = stack.settled(acct["account_no"], count=3)[2:]
    assert [d.channel for d in later] == ["postcard"]


def test_a_delayed_dsn_leaves_the_email_sent_with_a_timeline_entry(
    bouncing: tuple[Stack, BounceReceiver], simulators: Simulators
) -> None:
    stack, _ = bouncing
    acct = an_email_only_account("slow.example")
    stack.post(events.unpaid(acct))
    [email] = stack.reach(acct["account_no"], [("email", "sent")])

    [(status, entry)] = wait_until(
        lambda: dsn_entries(stack, email.id), timeout=60, what="the delayed DSN in the timeline"
    )

    assert (status, entry["action"], entry["dsn_status"]) == ("report", "delayed", "4.4.1")
    assert "retries it itself" in entry["note"]
    assert [(d.channel, d.status) for d in stack.deliveries(acct["account_no"])] == [
        ("email", "sent")
    ]
    with stack.db() as session:
        account = session.get(Account, acct["account_no"])
    assert account is not None and account.invalid_email is None


def test_a_report_with_a_forged_token_or_for_no_email_of_ours_is_dropped(
    bouncing: tuple[Stack, BounceReceiver],
) -> None:
    stack, receiver = bouncing
    report = (REPORTS / "postfix-user-unknown.eml").read_bytes().replace(b"\n", b"\r\n")
    forged = f"bounces+AQAAAAAAAAAqAAAAAGkYvWC3T7BfHP7XnQJ6Rz1m9yYk@{BOUNCE_DOMAIN}"
    before = stack.runtime.clock()
    with smtplib.SMTP(receiver.host, receiver.port, timeout=30) as client:
        client.ehlo()
        client.mail("")
        assert client.rcpt(forged)[0] == 250  # accepted (a refusal would be backscatter) ...
        code, said = client.data(report)
        assert (code, said.split()[-1]) == (250, b"unmatched")  # ... and dropped
        client.mail("")
        code, said = client.rcpt(f"postmaster@{BOUNCE_DOMAIN}")  # not a bounce address
        assert code == 550
    with stack.db() as session:
        touched = session.exec(
            select(Delivery).where(col(Delivery.updated_at) >= before, Delivery.channel == "email")
        ).all()
    assert not any(d.status == "undelivered" for d in touched)


def report_to(receiver: BounceReceiver, bounce_address: str, fixture: str) -> str:
    """Send a fixture's report to ``bounce_address``, as the remote MTA would; the reply."""
    raw = (REPORTS / fixture).read_bytes().replace(b"\n", b"\r\n")
    with smtplib.SMTP(receiver.host, receiver.port, timeout=30) as client:
        client.ehlo()
        client.mail("")
        code, said = client.rcpt(bounce_address)
        if code == 250:
            code, said = client.data(raw)
    return f"{code} {said.decode()}"


def sent_email(stack: Stack, simulators: Simulators) -> tuple[dict[str, Any], Any, str]:
    """An email-only account's notice, sent; the account, the delivery, its bounce address."""
    acct = an_email_only_account("example.com")
    stack.post(events.unpaid(acct))
    [email] = stack.reach(acct["account_no"], [("email", "sent")])
    envelope = next(e for e in simulators.smtp.envelopes if acct["email"] in e.rcpt_tos)
    return acct, email, envelope.mail_from


def test_a_final_4xx_failure_falls_back_but_leaves_the_address_good(
    bouncing: tuple[Stack, BounceReceiver], simulators: Simulators
) -> None:
    stack, receiver = bouncing
    acct, email, bounce_address = sent_email(stack, simulators)

    # Postfix gave up after its queue lifetime: Action failed, Status 4.4.1.
    reply = report_to(receiver, bounce_address, "postfix-expired-4xx.eml")

    assert reply.endswith("undelivered"), reply
    rows = stack.reach(acct["account_no"], [("email", "undelivered"), ("postcard", "sent")])
    assert rows[0].id == email.id and rows[1].fallback_of == email.id
    with stack.db() as session:
        account = session.get(Account, acct["account_no"])
    assert account is not None and account.invalid_email is None  # a dead server, not address


def test_a_complaint_opts_the_account_out_of_email_without_a_fallback(
    bouncing: tuple[Stack, BounceReceiver], simulators: Simulators
) -> None:
    stack, receiver = bouncing
    acct, email, bounce_address = sent_email(stack, simulators)

    reply = report_to(receiver, bounce_address, "rfc5965-abuse.eml")
    again = report_to(receiver, bounce_address, "rfc5965-abuse.eml")

    assert (reply.split()[-1], again.split()[-1]) == ("opted_out", "duplicate")
    with stack.db() as session:
        account = session.get(Account, acct["account_no"])
    assert account is not None and account.opt_outs == ["email"]
    assert [(d.channel, d.status) for d in stack.deliveries(acct["account_no"])] == [
        ("email", "sent")
    ]
    [complaint] = [d for _, d in stack.timeline(email.id) if d.get("report") == "complaint"]
    assert (complaint["feedback_type"], complaint["opt_out"]) == ("abuse", True)


def test_the_receiver_will_not_start_without_a_bounce_domain(
    bouncing: tuple[Stack, BounceReceiver],
) -> None:
    stack, _ = bouncing
    env = {k: v for k, v in stack.env_for_cli().items() if k != "NOTIFIER_BOUNCES__DOMAIN"}
    done = subprocess.run(
        [sys.executable, "-m", "notifier", "bounces", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "NOTIFIER_BOUNCES__DOMAIN" in done.stderr


def test_a_report_that_beats_the_workers_record_is_refused_for_now_and_taken_later(
    bouncing: tuple[Stack, BounceReceiver],
) -> None:
    stack, receiver = bouncing
    acct = an_email_only_account("example.com")
    stack.stop_worker()
    try:
        event = events.unpaid(acct)
        stack.post(event)
        with stack.db() as session:
            pk = session.exec(select(Event.id).where(Event.event_id == event["event_id"])).one()
        assert pk is not None
        process_events(stack.runtime, [pk])  # the worker's first task: the email is queued
        [email] = stack.deliveries(acct["account_no"])
        assert email.id is not None and email.status == "queued"
        # The address the worker will give this email (the token names the delivery).
        bounce_address = verp.bounce_address(stack.settings, email.id, now=stack.runtime.clock())
        assert bounce_address is not None

        early = report_to(receiver, bounce_address, "postfix-user-unknown.eml")
    finally:
        stack.start_worker()

    assert early.startswith("451"), early  # the reporting MTA keeps it and tries again
    stack.reach(acct["account_no"], [("email", "sent")])
    later = report_to(receiver, bounce_address, "postfix-user-unknown.eml")
    assert later.endswith("undelivered"), later
    stack.reach(acct["account_no"], [("email", "undelivered"), ("postcard", "sent")])
