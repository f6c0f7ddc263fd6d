"""SMS through Mitake, the whole way: the worker sends, the simulator reports to our API.

``NOTIFIER_PROVIDERS__SMS=mitake`` picks the adapter; the Mitake simulator
answers SmSend and GETs its delivery report to the ``response`` URL each SMS
named (``/v1/callbacks/mitake/status/{token}``), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import pytest

from notifier.deliveries.models import Delivery
from notifier.providers.simulated import Simulators
from tests.support import events
from tests.support.stack import Stack, build_stack
from tests.support.twilio import flush_reports

UNDELIVERED = "+886912300006"  # simulator: report StatusFlag 6, number error
REFUSED = "+886912399990"  # simulator: statuscode v, invalid number
STALLS = "+886912377777"  # simulator: accepted and recorded, then the answer stalls 5 s


@pytest.fixture(scope="module", params=["sqlite-filesystem", "postgres-redis"])
def stack(
    request: pytest.FixtureRequest,
    simulators: Simulators,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    env = {
        **simulators.env,
        "NOTIFIER_PROVIDERS": json.dumps(
            {"sms": "mitake", "voice": "sandbox", "email": "sandbox", "push": "sandbox"}
        ),
        # Each stack's database counts deliveries from 1 again: without a prefix of its
        # own, Mitake (here: its simulator) takes delivery 1 for the last stack's delivery 1.
        "NOTIFIER_MITAKE__CLIENT_ID_PREFIX": f"t{secrets.token_hex(3)}-",
        # Shorter than the simulator's stall: the answer to a stalled send never comes.
        "NOTIFIER_MITAKE__TIMEOUT": "1",
    }
    name = f"{request.param}-mitake"
    built = build_stack(name, tmp_path_factory.mktemp(name), env)
    yield built
    built.close()


def _sms_only(phone: str) -> dict[str, object]:
    return events.account(phone=phone, email=None, push_tokens=None)


def _report_for(simulators: Simulators, msgid: str) -> dict[str, str]:
    simulators.mitake.wait_callbacks()
    with simulators.mitake.lock:
        return next(c for c in simulators.mitake.callbacks_sent if c["params"]["msgid"] == msgid)


def _delivered_sms(stack: Stack) -> Delivery:
    acct = _sms_only("+886912345678")
    stack.post(events.unpaid(acct))
    [sms] = stack.reach(str(acct["account_no"]), [("sms", "delivered")])
    return sms


def test_an_sms_is_accepted_reported_and_delivered(stack: Stack, simulators: Simulators) -> None:
    sms = _delivered_sms(stack)
    assert sms.provider == "mitake"
    report = _report_for(simulators, str(sms.provider_id))
    assert report["acked"] and report["status"] == 200  # Mitake's acknowledgement came back
    assert urlsplit(report["url"]).path.startswith("/v1/callbacks/mitake/status/")
    reported = [d for s, d in stack.timeline(sms.id) if d.get("report") == "mitake"]
    assert [(d["provider_status"], d["statusstr"]) for d in reported] == [("4", "DELIVRD")]
    # One SMS went out for it (the tally by delivery id would mix this module's two stacks).
    key = f"{stack.env['NOTIFIER_MITAKE__CLIENT_ID_PREFIX']}{sms.id}"
    assert len([m for m in simulators.mitake.messages if m["clientid"] == key]) == 1


def test_a_report_again_is_acknowledged_and_recorded_once(
    stack: Stack, simulators: Simulators
) -> None:
    sms = _delivered_sms(stack)
    report = _report_for(simulators, str(sms.provider_id))
    path = urlsplit(report["url"]).path
    again = stack.client.get(f"{path}?{urlencode(report['params'])}")
    assert again.status_code == 200
    assert again.text == f"magicid=sms_gateway_rpack\nmsgid={sms.provider_id}\n"
    reported = [s for s, d in stack.timeline(sms.id) if d.get("report") == "mitake"]
    assert reported == ["delivered"]


def test_a_report_by_post_is_read_too(stack: Stack, simulators: Simulators) -> None:
    sms = _delivered_sms(stack)
    report = _report_for(simulators, str(sms.provider_id))
    posted = stack.client.post(urlsplit(report["url"]).path, data=report["params"])
    assert posted.status_code == 200 and f"msgid={sms.provider_id}" in posted.text


def test_an_undelivered_report_starts_the_fallback(stack: Stack, simulators: Simulators) -> None:
    acct = _sms_only(UNDELIVERED)
    stack.post(events.unpaid(acct))
    rows = stack.settled(str(acct["account_no"]), count=2)
    sms, after = rows[0], rows[1]
    assert (sms.channel, sms.status) == ("sms", "undelivered")
    assert sms.last_error == "provider: undelivered"
    assert after.fallback_of == sms.id
    reported = [d for s, d in stack.timeline(sms.id) if d.get("report") == "mitake"]
    assert reported[-1]["error_code"] == "mitake:6"


def test_a_number_mitake_refuses_fails_at_once_and_falls_back(
    stack: Stack, simulators: Simulators
) -> None:
    acct = _sms_only(REFUSED)
    stack.post(events.unpaid(acct))
    rows = stack.settled(str(acct["account_no"]), count=2)
    sms = rows[0]
    assert (sms.channel, sms.status, sms.attempts) == ("sms", "failed", 1)
    assert sms.last_error is not None and sms.last_error.startswith("mitake:v")
    assert rows[1].fallback_of == sms.id
    assert not [m for m in simulators.mitake.messages if m["dstaddr"] == "0912399990"]


def test_a_report_with_a_token_not_ours_is_refused(stack: Stack) -> None:
    token = "A" * 44
    answer = stack.client.get(
        f"/v1/callbacks/mitake/status/{token}?msgid=1&StatusFlag=4&statusstr=DELIVRD"
    )
    assert answer.status_code == 403


def test_a_report_about_another_message_is_refused(
    stack: Stack, simulators: Simulators, caplog: pytest.LogCaptureFixture
) -> None:
    sms = _delivered_sms(stack)
    report = _report_for(simulators, str(sms.provider_id))
    forged = report["params"] | {"msgid": "0000000001", "StatusFlag": "6"}
    caplog.set_level(logging.WARNING, logger="notifier.flows.report_buffer")
    # The token holds, so it is acknowledged; applying it (in a batch) refuses it.
    answer = stack.client.get(f"{urlsplit(report['url']).path}?{urlencode(forged)}")
    assert answer.status_code == 200
    flush_reports(stack)
    [refusal] = [r.getMessage() for r in caplog.records if r.name == "notifier.flows.report_buffer"]
    assert f"delivery {sms.id} sent no provider message" in refusal
    with stack.db() as session:
        assert session.get(Delivery, sms.id).status == "delivered"  # type: ignore[union-attr]


def test_a_send_whose_answer_stalled_reaches_the_customer_once(
    stack: Stack, simulators: Simulators
) -> None:
    # Mitake took it and its answer never came: the repeat under the same clientid is
    # answered Duplicate=Y with the first msgid, and the report (which may come first) settles it.
    acct = _sms_only(STALLS)
    stack.post(events.unpaid(acct))
    [sms] = stack.reach(str(acct["account_no"]), [("sms", "delivered")])
    key = f"{stack.env['NOTIFIER_MITAKE__CLIENT_ID_PREFIX']}{sms.id}"
    with simulators.mitake.lock:
        sent = [m for m in simulators.mitake.messages if m["clientid"] == key]
        repeated = [m for m in simulators.mitake.duplicates if m["clientid"] == key]
    assert len(sent) == 1 and len(repeated) >= 1
    assert sms.provider_id == sent[0]["msgid"]
    sends = [d for s, d in stack.timeline(sms.id) if s == "sent"]
    assert sends and sends[-1].get("duplicate") is True
