"""`notifier up` as a newcomer runs it: one command, no servers, Ctrl-C stops it all.

An event comes in over HTTP and one over the message bus (`notifier events publish`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import events
from tests.support.stack import free_port, http_ok, wait_until


def _leftover_processes(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def test_notifier_up_delivers_an_unpaid_bill_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "embedded-data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(NOTIFIER_DATA_DIR=str(data_dir), NOTIFIER_QUIET_HOURS="off")
    service = subprocess.Popen(
        [sys.executable, "-m", "notifier", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = ""
        assert service.stdout is not None
        for line in service.stdout:
            banner += line
            if "Ctrl-C" in line:
                break
        key = re.search(r"producer key \(shown once\): (ntf_\S+)", banner)
        assert key, f"no producer key in:\n{banner}"
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{base}/healthz"), timeout=30, what="the API")

        acct = events.account()
        event = events.unpaid(acct)
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        answer = httpx.post(f"{base}/v1/events", json=event, headers=headers)
        assert answer.status_code == 202, answer.text

        # An ops key made beside the running service, as the quickstart shows.
        ops_key = subprocess.run(
            [sys.executable, "-m", "notifier", "keys", "create", "--role", "ops"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

        def statuses(account_no: str = acct["account_no"]) -> dict[str, str] | None:
            page = httpx.get(
                f"{base}/v1/deliveries",
                params={"account_no": account_no},
                headers={"Authorization": f"Bearer {ops_key}"},
            ).json()
            seen = {item["channel"]: (item["provider"], item["status"]) for item in page["items"]}
            expected = {
                "push": ("fcm", "sent"),
                "sms": ("twilio", "delivered"),
                "email": ("smtp", "sent"),
            }
            return seen if seen == expected else None

        # The real adapters against the simulators, Twilio's callback included.
        wait_until(statuses, timeout=60, what="push, SMS and email through the simulators")
        mails = list((data_dir / "mail").glob("*.eml"))
        assert len(mails) == 1 and acct["email"] in mails[0].read_text(errors="replace")

        # The same notice published on the message bus (here the filesystem broker).
        bus_acct = events.account()
        feed = tmp_path / "unpaid.jsonl"
        feed.write_text(json.dumps(events.unpaid(bus_acct)) + "\n", encoding="utf-8")
        published = subprocess.run(
            [sys.executable, "-m", "notifier", "events", "publish", str(feed)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert published.returncode == 0, published.stdout + published.stderr
        assert "1 valid, 0 repeated in the file, 0 invalid; 1 published" in published.stdout
        wait_until(
            lambda: statuses(bus_acct["account_no"]),
            timeout=60,
            what="push, SMS and email of the event published on the bus",
        )

        # Mail to a dead address bounces back to `notifier bounces`, as a real MTA's would.
        assert "bounces    127.0.0.1:" in banner
        dead = events.account(phone=None, push_tokens=None)
        dead["email"] = f"c{dead['account_no']}@dead.example"
        answer = httpx.post(f"{base}/v1/events", json=events.unpaid(dead), headers=headers)
        assert answer.status_code == 202, answer.text

        def bounced() -> bool:
            page = httpx.get(
                f"{base}/v1/deliveries",
                params={"account_no": dead["account_no"]},
                headers={"Authorization": f"Bearer {ops_key}"},
            ).json()
            return {(i["channel"], i["status"]) for i in page["items"]} >= {
                ("email", "undelivered"),
                ("postcard", "queued"),  # the fallback, printed at the day's cut-off
            }

        wait_until(bounced, timeout=60, what="the bounced email and its fallback postcard")
    finally:
        service.send_signal(signal.SIGINT)
        code = service.wait(timeout=60)
    assert code == 0, f"notifier up exited {code}"
    assert _leftover_processes(str(data_dir)) == []


def test_notifier_up_sends_sms_through_the_mitake_simulator_when_chosen(tmp_path: Path) -> None:
    data_dir = tmp_path / "embedded-mitake"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_DATA_DIR=str(data_dir),
        NOTIFIER_QUIET_HOURS="off",
        NOTIFIER_PROVIDERS__SMS="mitake",
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "notifier", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = ""
        assert service.stdout is not None
        for line in service.stdout:
            banner += line
            if "Ctrl-C" in line:
                break
        assert "sms → mitake" in banner and "(local simulators)" in banner, banner
        key = re.search(r"producer key \(shown once\): (ntf_\S+)", banner)
        assert key, f"no producer key in:\n{banner}"
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{base}/healthz"), timeout=30, what="the API")
        acct = events.account(email=None, push_tokens=None)
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        answer = httpx.post(f"{base}/v1/events", json=events.unpaid(acct), headers=headers)
        assert answer.status_code == 202, answer.text
        ops_key = subprocess.run(
            [sys.executable, "-m", "notifier", "keys", "create", "--role", "ops"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

        def delivered() -> bool:
            page = httpx.get(
                f"{base}/v1/deliveries",
                params={"account_no": acct["account_no"]},
                headers={"Authorization": f"Bearer {ops_key}"},
            ).json()
            seen = [(item["channel"], item["provider"], item["status"]) for item in page["items"]]
            return seen == [("sms", "mitake", "delivered")]

        # Mitake's report came back to the embedded API.
        wait_until(delivered, timeout=60, what="the SMS through the Mitake simulator")
    finally:
        service.send_signal(signal.SIGINT)
        code = service.wait(timeout=60)
    assert code == 0, f"notifier up exited {code}"
    assert _leftover_processes(str(data_dir)) == []
