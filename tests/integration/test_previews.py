"""Ops preview a notice exactly as a customer would get it, before it goes live."""

from __future__ import annotations

import subprocess
import sys

from tests.support import events
from tests.support.stack import Stack


def test_ops_preview_an_sms_for_a_real_account_with_two_unpaid_bills(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None, name="陳美玲")
    stack.post(events.unpaid(acct, period="2026-07", amount=1200))
    stack.post(events.unpaid(acct, period="2026-09", amount=1830))
    stack.settled(acct["account_no"], count=2)
    answer = stack.client.get(
        "/v1/templates/preview",
        params={"event": "bill.unpaid", "channel": "sms", "account_no": acct["account_no"]},
        headers=stack.ops,
    )
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["language"] == "zh-TW" and not shown["language_fallback"]
    assert "陳美玲" in shown["body"] and "NT$3,030" in shown["body"]
    assert acct["account_no"][-4:] in shown["body"] and acct["account_no"] not in shown["body"]
    assert 1 <= shown["segments"] <= 2


def test_a_language_without_templates_previews_in_traditional_chinese(stack: Stack) -> None:
    answer = stack.client.get(
        "/v1/templates/preview",
        params={"event": "usage.abnormal", "channel": "email", "lang": "ja"},
        headers=stack.ops,
    ).json()
    assert answer["language"] == "zh-TW" and answer["language_fallback"] is True
    assert answer["subject"] and answer["html"].lstrip().lower().startswith("<!doctype html")


def test_previews_refuse_unknown_accounts_channels_and_producer_keys(stack: Stack) -> None:
    base = {"event": "bill.unpaid", "channel": "sms"}
    url = "/v1/templates/preview"
    assert (
        stack.client.get(
            url, params={**base, "account_no": events.new_account_no()}, headers=stack.ops
        ).status_code
        == 404
    )
    assert (
        stack.client.get(url, params={**base, "channel": "fax"}, headers=stack.ops).status_code
        == 422
    )
    assert stack.client.get(url, params=base, headers=stack.producer).status_code == 403


def test_the_preview_command_prints_the_notice_and_its_segments(stack: Stack) -> None:
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "notifier",
            "preview",
            "bill.unpaid",
            "--channel",
            "sms",
            "--level",
            "2",
        ],
        env={**stack.env_for_cli(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "SMS segment(s)" in printed and "NT$" in printed
