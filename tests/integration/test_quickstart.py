"""The docs' quickstart, followed as a newcomer would: every shell block of
docs/quickstart.md runs as written, top to bottom, against `notifier up` in a subprocess;
only the producer key (`ntf_...`) and the port (8000) are substituted. The README's
commands are the quickstart's. `make run` is the service this test starts itself
(`python -m notifier up`, what the target runs after installing), and `make test` is
the suite this test is part of."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from notifier.settings import PROJECT_ROOT
from tests.support.stack import free_port, http_ok, wait_until

QUICKSTART = PROJECT_ROOT / "docs" / "quickstart.md"
README = PROJECT_ROOT / "README.md"
KEY = re.compile(r"\bntf_[A-Za-z0-9_\-]{16,}")


def shell_blocks(page: Path) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


def commands(block: str) -> list[str]:
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_the_readme_shows_the_quickstarts_commands() -> None:
    quickstart = {line for block in shell_blocks(QUICKSTART) for line in commands(block)}
    readme = [line for block in shell_blocks(README) for line in commands(block)]
    assert readme, "no shell blocks in the README"
    assert [line for line in readme if line not in quickstart] == []


class _Output:
    """The service's output, read in a thread so that a full pipe never stalls it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.text += line


def test_every_quickstart_command_runs_as_written(tmp_path: Path) -> None:
    blocks = shell_blocks(QUICKSTART)
    assert [commands(b) for b in blocks if b.startswith("make ")] == [["make run"], ["make test"]]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    # The quickstart's own advice for trying it at night: quiet hours would defer SMS and push.
    env.update(NOTIFIER_DATA_DIR=str(tmp_path / "var"), NOTIFIER_QUIET_HOURS="off")
    service = subprocess.Popen(
        [sys.executable, "-m", "notifier", "up", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = _Output(service)
    state = tmp_path / "shell-state.sh"
    state.write_text("")

    def run(block: str) -> str:
        # One shell per block; the variables it sets (KEY, OPS_KEY) carry to the next.
        script = f"set -ea\nsource {state}\n{block}\nexport -p > {state}\n"
        done = subprocess.run(
            ["bash", "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{base}/healthz"), timeout=60, what="the API")
        key = wait_until(lambda: KEY.search(output.text), timeout=30, what="the producer key")
        outputs = []
        before = ""
        for block in blocks:
            if block.startswith("make "):
                continue
            text = block.replace("ntf_...", key.group(0)).replace(
                "127.0.0.1:8000", f"127.0.0.1:{port}"
            )
            if "/v1/deliveries" in text:

                def delivered(text: str = text) -> dict[str, str] | None:
                    items = json.loads(run(text))["items"]
                    seen = {item["channel"]: item["status"] for item in items}
                    wanted = {"push": "sent", "sms": "delivered", "email": "sent"}
                    return seen if seen == wanted else None

                outputs.append(wait_until(delivered, timeout=60, what="push, SMS and email"))
            else:
                if "escalate --as-of 2027-01-20" in text:
                    # The page says the date given is the first that opens the case.
                    before = run(".venv/bin/notifier escalate --as-of 2027-01-19 --dry-run")
                outputs.append(run(text))
        posted, made_key, _, added, swept_and_pulled = outputs
        assert json.loads(posted)["status"] == "accepted"
        assert made_key == "" and "OPS_KEY" in state.read_text()
        assert added.strip() == "1", added  # the agent the agents' guide goes on with
        swept, _, pulled = swept_and_pulled.partition("\n")
        assert "as of 2027-01-20" in swept and "1 cases opened (1 assigned" in swept, swept
        assert re.search(r"^1,01234567890,", pulled, re.M), pulled  # the call case, on its list
        assert re.search(r"^opened\s+0$", before, re.M), before  # the day before: no case yet
    finally:
        service.terminate()
        service.wait(timeout=60)
