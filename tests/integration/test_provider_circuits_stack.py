"""A wrong Twilio auth token on the whole stack: held SMS, the banner, the metric, then recovery.

A real worker and API (PostgreSQL, Redis: the circuit lives in Redis, as the
rate limiter's slots do) against the Twilio simulator, told to answer every
send with 20003 as it does for a wrong auth token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import select

from notifier.accounts.models import Account
from notifier.providers.simulated import Simulators
from tests.support import events
from tests.support.stack import Stack, build_stack, wait_until
from tests.support.web import PASSWORD, Browser, new_user

OPEN_SECONDS = 2


@pytest.fixture(scope="module")
def stack(simulators: Simulators, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        **simulators.env,
        "NOTIFIER_PROVIDERS": '{"sms": "twilio", "voice": "twilio", "email": "sandbox", '
        '"push": "sandbox"}',
        "NOTIFIER_CIRCUIT_OPEN_SECONDS": str(OPEN_SECONDS),
    }
    built = build_stack("postgres-redis-circuits", tmp_path_factory.mktemp("circuits"), env)
    yield built
    built.close()


def held_by_circuit(stack: Stack, delivery_id: int | None) -> bool:
    """Whether the timeline has the delivery put back to ``queued`` by twilio's open circuit."""
    return any(
        status == "queued"
        and str(detail.get("reason", "")).startswith("provider twilio circuit open: 20003")
        for status, detail in stack.timeline(delivery_id)
    )


def test_a_wrong_token_holds_the_sms_shows_why_and_the_probe_sends_each_once(
    stack: Stack, simulators: Simulators
) -> None:
    simulators.twilio.refuse_account(20003)
    accts = [
        events.account(phone=f"+8869123{n:05d}", email=None, push_tokens=None)
        for n in (40001, 40002)
    ]
    try:
        for acct in accts:
            stack.post(events.unpaid(acct))
        held = [
            wait_until(
                lambda acct=acct: [
                    d for d in stack.deliveries(acct["account_no"]) if held_by_circuit(stack, d.id)
                ],
                timeout=60,
                what="the SMS held by the open circuit",
            )[0]
            for acct in accts
        ]
        # Re-read: the worker probes every OPEN_SECONDS meanwhile, refused each time.
        assert all(d.channel == "sms" for d in held)
        assert [d.attempts for a in accts for d in stack.deliveries(a["account_no"])] == [0, 0]

        metrics = stack.client.get("/metrics").text
        assert 'notifier_provider_circuit_open{provider="twilio"} 1.0' in metrics
        assert 'notifier_provider_circuit_openings_total{provider="twilio"} 1.0' in metrics
        browser = Browser(stack.base_url)
        assert browser.sign_in(new_user(stack, "ops").username, PASSWORD).status_code == 303
        for page in ("/ops", "/ops/dashboard"):
            html = browser.get(page).text
            assert 'id="circuit-twilio"' in html and "20003" in html, page
            assert simulators.auth_token not in html
    finally:
        simulators.twilio.refuse_account(None)  # the credential is fixed

    for acct in accts:
        [sms] = stack.reach(acct["account_no"], [("sms", "delivered")], timeout=120)
        assert sms.provider == "twilio"
        assert len(stack.deliveries(acct["account_no"])) == 1, "nothing fell back"
    sent = simulators.sends()
    assert [sent[d.id, a["phone"]] for d, a in zip(held, accts, strict=True)] == [1, 1]
    with stack.db() as session:
        for acct in accts:
            account = session.exec(
                select(Account).where(Account.account_no == acct["account_no"])
            ).one()
            assert account.phone == acct["phone"] and account.phone_invalid_reason is None
    wait_until(
        lambda: (
            'notifier_provider_circuit_open{provider="twilio"} 0.0'
            in stack.client.get("/metrics").text
        ),
        timeout=60,
        what="the metric to show the circuit closed",
    )
    browser = Browser(stack.base_url)
    assert browser.sign_in(new_user(stack, "ops").username, PASSWORD).status_code == 303
    log = browser.get("/ops", params={"q": accts[0]["account_no"]}).text
    assert 'id="circuit-twilio"' not in log
    assert '<td class="provider">Twilio</td>' in log, "the log says which provider sent it"
