"""`notifier up` as a newcomer runs it: one command, no servers, Ctrl-C stops it all.

An event comes in over HTTP and one over the message bus (`notifier events publish`).
The banner is the last thing it prints, and its producer key is the same at the next start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support import events
from tests.support.stack import free_port, http_ok, wait_until

KEY = re.compile(r"producer key (ntf_\S+)")


def _start(data_dir: Path, port: int, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`notifier up` on ``data_dir``, and its banner, read up to its last line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(NOTIFIER_DATA_DIR=str(data_dir), NOTIFIER_QUIET_HOURS="off")
    service = subprocess.Popen(
        [sys.executable, "-m", "notifier", "up", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = ""
    assert service.stdout is not None
    for line in service.stdout:
        banner += line
        if "Ctrl-C" in line:
            break
    return service, banner


def _stop(service: subprocess.Popen[str]) -> None:
    """Ctrl-C; it stops cleanly."""
    service.send_signal(signal.SIGINT)
    rest, _ = service.communicate(timeout=60)
    assert service.returncode == 0, f"notifier up exited {service.returncode}:\n{rest}"


def _printed_while_running(service: subprocess.Popen[str], seconds: float) -> str:
    """What the running service prints in the next ``seconds`` (after its banner)."""
    lines: list[str] = []
    assert service.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(service.stdout or ()), daemon=True)
    reader.start()
    time.sleep(seconds)
    return "".join(lines)  # what came up to now; the reader keeps draining the pipe


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
        key = KEY.search(banner)
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
        assert re.search(r"bounces +127\.0\.0\.1:", banner), banner
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
        key = KEY.search(banner)
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


def test_the_producer_key_is_the_same_at_the_next_start_and_new_only_when_asked(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "embedded-key"
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def accepted(key: str) -> int:
        event = events.unpaid(events.account())
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.post(f"{base}/v1/events", json=event, headers=headers).status_code

    service, banner = _start(data_dir, port)
    try:
        first = KEY.search(banner)
        assert first, banner
        assert "a new key" in banner
        for shown in (f"{base}/sign-in", f"{base}/docs"):
            assert shown in banner
        wait_until(lambda: http_ok(f"{base}/healthz"), timeout=30, what="the API")
        assert accepted(first.group(1)) == 202
        # Nothing after the banner: Celery's banner, uvicorn's lines and warnings are quiet,
        # while the event is delivered.
        after = _printed_while_running(service, seconds=5)
    finally:
        _stop(service)
    assert banner.rstrip().splitlines()[-1].startswith("Ctrl-C stops it.")
    assert after.strip() == "", f"printed after the banner:\n{after}"
    kept = data_dir / "producer-key"
    assert kept.read_text().strip() == first.group(1)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    service, banner = _start(data_dir, port)
    try:
        again = KEY.search(banner)
        assert again and again.group(1) == first.group(1), banner
        assert "the same key as the last run" in banner
        wait_until(lambda: http_ok(f"{base}/healthz"), timeout=30, what="the API")
        assert accepted(first.group(1)) == 202
    finally:
        _stop(service)

    service, banner = _start(data_dir, port, "--new-producer-key")
    try:
        new = KEY.search(banner)
        assert new and new.group(1) != first.group(1), banner
        wait_until(lambda: http_ok(f"{base}/healthz"), timeout=30, what="the API")
        assert accepted(new.group(1)) == 202
        assert accepted(first.group(1)) == 401  # the old key no longer works
    finally:
        _stop(service)
    assert kept.read_text().strip() == new.group(1)
    assert _leftover_processes(str(data_dir)) == []
