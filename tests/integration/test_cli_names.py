"""The shell commands that add people, run twice as a guide or a script might: a second
agent or user of the same name in the same area is refused, naming the first, unless
``--allow-duplicate``; and the embedded producer key changes only when asked, on SQLite
and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.stack import need, postgres_database

PASSWORD = "a long enough passphrase 2026"

Notifier = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(params=["sqlite", "postgres"])
def notifier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Notifier]:
    """``notifier ARGS…`` on a migrated database of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFIER_DATA_DIR"] = str(tmp_path / "data")
    drop = None
    if request.param == "postgres":
        need("PostgreSQL", "127.0.0.1", 5432)
        env["NOTIFIER_DATABASE_URL"], drop = postgres_database()

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "notifier", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("migrate").returncode == 0
    try:
        yield run
    finally:
        if drop is not None:
            drop()


def _one_line(stderr: str) -> str:
    """An error's text with typer's box and wrapping taken away."""
    inside = [line.strip("│╭╮╰╯─ ") for line in stderr.splitlines()]
    return " ".join(part for part in inside if part and not part.startswith(("Usage", "Try")))


def test_a_second_agent_of_the_same_name_in_an_area_is_refused_unless_asked(
    notifier: Notifier,
) -> None:
    add = ("agents", "add", "--area", "toufen", "--kind", "caller")
    first = notifier(*add, "--name", "林建宏")
    assert first.returncode == 0, first.stderr
    agent_id = first.stdout.strip()

    again = notifier(*add, "--name", " 林建宏 ")
    assert again.returncode != 0
    said = _one_line(again.stderr)
    assert f"agent {agent_id} (林建宏, caller) has that name in toufen already" in said
    assert "--allow-duplicate" in said and "Traceback" not in again.stderr
    listed = notifier("agents", "list", "--area", "toufen").stdout.splitlines()
    assert len(listed) == 2  # the header and the first one: nothing was added

    elsewhere = notifier("agents", "add", "--name", "林建宏", "--area", "zhunan", "--kind", "field")
    assert elsewhere.returncode == 0, elsewhere.stderr  # another area: another person
    namesake = notifier(*add, "--name", "林建宏", "--allow-duplicate")
    assert namesake.returncode == 0, namesake.stderr
    assert namesake.stdout.strip() != agent_id
    assert len(notifier("agents", "list", "--area", "toufen").stdout.splitlines()) == 3


def test_a_second_user_of_the_same_name_in_an_area_is_refused_unless_asked(
    notifier: Notifier,
) -> None:
    toufen = notifier("agents", "add", "--name", "林建宏", "--area", "toufen", "--kind", "caller")
    zhunan = notifier("agents", "add", "--name", "陳志明", "--area", "zhunan", "--kind", "field")
    toufen_id, zhunan_id = toufen.stdout.strip(), zhunan.stdout.strip()

    def add(username: str, *args: str) -> subprocess.CompletedProcess[str]:
        return notifier(
            "users", "add", "--username", username, "--password-stdin", *args,
            stdin=PASSWORD + "\n",
        )  # fmt: skip

    first = add("lin", "--role", "agent", "--agent", toufen_id, "--name", "林建宏")
    assert first.returncode == 0, first.stderr
    user_id = first.stdout.strip()

    again = add("lin2", "--role", "agent", "--agent", toufen_id, "--name", "林建宏")
    assert again.returncode != 0
    said = _one_line(again.stderr)
    assert f"user {user_id} (lin, 林建宏) has that name in toufen already" in said
    assert "--allow-duplicate" in said

    # Another area's user, and an ops user (no area), may have the name.
    other = add("lin3", "--role", "agent", "--agent", zhunan_id, "--name", "林建宏")
    assert other.returncode == 0, other.stderr
    ops = add("alice", "--role", "ops", "--name", "Alice Lin")
    assert ops.returncode == 0, ops.stderr
    ops_again = add("alice.lin", "--role", "ops", "--name", "alice lin")
    assert "has that name among the users who are no agent" in _one_line(ops_again.stderr)
    namesake = add("lin4", "--role", "agent", "--agent", toufen_id, "--name", "林建宏",
                   "--allow-duplicate")  # fmt: skip
    assert namesake.returncode == 0, namesake.stderr
    names = [line.split("\t")[1] for line in notifier("users", "list").stdout.splitlines()[1:]]
    assert names == ["lin", "lin3", "alice", "lin4"]


def test_the_embedded_producer_key_is_shown_and_replaced_only_when_asked(
    notifier: Notifier, tmp_path: Path
) -> None:
    missing = notifier("producer-key", "show")
    assert missing.returncode != 0 and "`notifier up` makes one" in missing.stderr
    rotated = notifier("producer-key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    key = rotated.stdout.strip()
    assert key.startswith("ntf_")
    assert notifier("producer-key", "show").stdout.strip() == key
    assert (tmp_path / "data" / "producer-key").stat().st_mode & 0o777 == 0o600

    again = notifier("producer-key", "rotate")
    assert again.stdout.strip() != key
    assert "the old one no longer works" in again.stderr
    keys = notifier("keys", "list").stdout.splitlines()[1:]
    states = [(line.split("\t")[2], line.split("\t")[-1]) for line in keys]
    assert states == [("embedded", "revoked"), ("embedded", "active")]
