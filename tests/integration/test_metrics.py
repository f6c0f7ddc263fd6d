"""GET /metrics on the real stack: the numbers are the database's, and nothing personal shows."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import sqlalchemy as sa
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlmodel import col

from notifier.deliveries.models import Delivery
from notifier.escalation import agents
from notifier.escalation.models import Escalation
from notifier.observability.metrics import Timeline, TimelineTotals, read_timeline
from tests.support import events
from tests.support.stack import Stack, wait_until

TWO_TRANSIENT_FAILURES = "+886900000012"
INVALID_NUMBER = "+886900000001"


def scrape(stack: Stack, **headers: str) -> dict[str, Metric]:
    answer = stack.client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(answer.text)}


def samples(family: Metric, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    """Sample values by their sorted labels (``le`` included), for names ending in ``suffix``."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def in_database(stack: Stack) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Deliveries by (channel, status), and attempts after the first by channel."""
    with stack.db() as session:
        counts = {
            (channel, status): n
            for channel, status, n in session.execute(
                sa.select(col(Delivery.channel), col(Delivery.status), sa.func.count()).group_by(
                    col(Delivery.channel), col(Delivery.status)
                )
            )
        }
        retries = {
            channel: int(n or 0)
            for channel, n in session.execute(
                sa.select(col(Delivery.channel), sa.func.sum(col(Delivery.attempts) - 1))
                .where(col(Delivery.attempts) > 1)
                .group_by(col(Delivery.channel))
            )
        }
    return counts, retries


def test_metrics_match_the_database_and_carry_no_personal_data(stack: Stack) -> None:
    everyone = events.account()
    invalid = events.account(phone=INVALID_NUMBER, email=None, push_tokens=None)
    flaky = events.account(phone=TWO_TRANSIENT_FAILURES, email=None, push_tokens=None)
    for acct in (everyone, invalid, flaky):
        assert stack.post(events.unpaid(acct)).status_code == 202
    stack.settled(everyone["account_no"], count=3)
    assert [(d.channel, d.status) for d in stack.settled(invalid["account_no"], count=2)] == [
        ("sms", "failed"),
        ("postcard", "sent"),
    ]
    [sms] = stack.settled(flaky["account_no"], count=1)
    assert (sms.status, sms.attempts) == ("delivered", 3)

    # A reading is kept for NOTIFIER_METRICS_CACHE_SECONDS: scrape until it is a new one.
    def matching() -> tuple[str, dict[str, Metric]] | None:
        text = stack.client.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        counts, retries = in_database(stack)
        gauge = samples(families["notifier_deliveries"])
        seen = {(dict(k)["channel"], dict(k)["status"]): int(v) for k, v in gauge.items()}
        final = {"delivered", "failed", "sent"}
        if {k: v for k, v in seen.items() if k[1] in final} != {
            k: v for k, v in counts.items() if k[1] in final
        }:
            return None
        scraped = samples(families["notifier_delivery_retries"], "_total")
        if {dict(k)["channel"]: int(v) for k, v in scraped.items() if v} != retries:
            return None
        return text, families

    text, families = wait_until(matching, timeout=30, interval=1, what="/metrics to match the DB")

    retries = samples(families["notifier_delivery_retries"], "_total")
    assert retries[(("channel", "sms"),)] >= 2  # the flaky number's two retries

    errors = samples(families["notifier_provider_errors"], "_total")
    assert errors[(("channel", "sms"), ("code", "21211"))] >= 1  # the invalid number
    assert errors[(("channel", "sms"), ("code", "503"))] >= 2  # the flaky number, twice
    assert {dict(k)["code"] for k in errors} <= {"21211", "503", "rejected", "none", "other"}

    for name in ("notifier_time_to_sent_seconds", "notifier_time_to_delivered_seconds"):
        histogram = families[name]
        counts = samples(histogram, "_count")
        assert counts[(("channel", "sms"),)] >= 2, name
        buckets = samples(histogram, "_bucket")
        sms = sorted(
            (float(dict(k)["le"]), v) for k, v in buckets.items() if dict(k)["channel"] == "sms"
        )
        assert [v for _, v in sms] == sorted(v for _, v in sms), "buckets are cumulative"
        assert sms[-1] == (float("inf"), counts[(("channel", "sms"),)])
        assert samples(histogram, "_sum")[(("channel", "sms"),)] > 0
    sent = samples(families["notifier_time_to_sent_seconds"], "_count")
    assert sent[(("channel", "postcard"),)] >= 1

    assert "notifier_escalations_open" in families
    depths = samples(families["notifier_queue_depth"])
    if stack.broker_url:  # RabbitMQ and Redis say how many messages wait
        assert {dict(k)["queue"] for k in depths} >= {"sms", "email", "push", "events"}
        assert all(v >= 0 for v in depths.values())

    personal: list[Any] = [
        INVALID_NUMBER,
        TWO_TRANSIENT_FAILURES,
        everyone["phone"],
        "0912345678",
        "912345678",
        "@",
        everyone["name"],
        "苗栗",
        *(a["account_no"] for a in (everyone, invalid, flaky)),
        *everyone["push_tokens"],
    ]
    assert [p for p in personal if p in text] == []


def same_totals(a: Timeline, b: Timeline) -> bool:
    """Equal counts and buckets; sums equal but for the order they were added in."""
    if a.errors != b.errors:
        return False
    for mine, theirs in (
        (a.time_to_sent, b.time_to_sent),
        (a.time_to_delivered, b.time_to_delivered),
    ):
        if mine.keys() != theirs.keys():
            return False
        for channel, h in mine.items():
            other = theirs[channel]
            if (h.buckets, h.count) != (other.buckets, other.count):
                return False
            if abs(h.total - other.total) > 1e-6 * max(1.0, abs(h.total)):
                return False
    return True


def test_totals_added_up_range_by_range_equal_a_full_reading(stack: Stack) -> None:
    totals = TimelineTotals(settle=0)  # fold whatever the previous read saw
    with stack.db() as session:
        totals.read(session)
    for phone in (TWO_TRANSIENT_FAILURES, INVALID_NUMBER):
        acct = events.account(phone=phone, email=None, push_tokens=None)
        assert stack.post(events.unpaid(acct)).status_code == 202
        for _ in range(5):  # read (and fold) while the delivery is under way
            with stack.db() as session:
                totals.read(session)
            time.sleep(0.3)
        stack.settled(acct["account_no"], count=1 if phone == TWO_TRANSIENT_FAILURES else 2)

        def agree() -> bool:  # (read again if a change committed between the two readings)
            with stack.db() as session:
                return same_totals(totals.read(session), read_timeline(session))

        wait_until(agree, timeout=20, interval=0.5, what="stepped totals to equal a full reading")
        assert totals.folded_upto > 0


@contextmanager
def metrics_token(stack: Stack, token: str) -> Iterator[None]:
    """The running API with NOTIFIER_METRICS_TOKEN set, for the block."""
    settings = stack.runtime.settings
    stack.runtime.settings = settings.model_copy(update={"metrics_token": SecretStr(token)})
    try:
        yield
    finally:
        stack.runtime.settings = settings


def test_a_configured_token_is_required(stack: Stack) -> None:
    assert stack.client.get("/metrics").status_code == 200  # no token set: open
    with metrics_token(stack, "scrape-7c41e2"):
        assert stack.client.get("/metrics").status_code == 401
        assert stack.client.get("/metrics", headers=stack.ops).status_code == 401  # not an API key
        wrong = {"Authorization": "Bearer scrape-0000"}
        assert stack.client.get("/metrics", headers=wrong).status_code == 401
        families = scrape(stack, Authorization="Bearer scrape-7c41e2")
        assert "notifier_deliveries" in families


def test_deployed_without_a_token_metrics_are_closed(stack: Stack) -> None:
    settings = stack.runtime.settings
    stack.runtime.settings = settings.model_copy(update={"mode": "deployed"})
    try:
        answer = stack.client.get("/metrics")
    finally:
        stack.runtime.settings = settings
    assert answer.status_code == 403
    assert "NOTIFIER_METRICS_TOKEN" in answer.json()["detail"]


def test_an_area_no_agent_works_is_not_a_label_of_its_own(stack: Stack) -> None:
    staffed, invented = f"area-{secrets.token_hex(3)}", f"spam-{secrets.token_hex(3)}"
    accts = [events.account(area=staffed), events.account(area=invented)]
    for acct in accts:
        stack.post(events.unpaid(acct))
        stack.settled(acct["account_no"], count=3)
    with stack.db() as session:
        agents.add_agent(session, name="林建宏", area=staffed, kind="caller")
        for acct in accts:  # a producer may send any area it likes: one case in each
            session.add(
                Escalation(
                    account_no=acct["account_no"],
                    kind="call",
                    area=acct["area"],
                    opened_on=date(2027, 1, 21),
                )
            )
        session.commit()

    # The readings are cached for NOTIFIER_METRICS_CACHE_SECONDS: wait for a fresh one.
    def areas() -> set[str] | None:
        found = {
            dict(labels)["area"] for labels in samples(scrape(stack)["notifier_escalations_open"])
        }
        return found if staffed in found else None

    labelled = wait_until(areas, timeout=60, what="the open cases in the metrics")
    assert invented not in labelled and "other" in labelled
