"""``notifier users`` from the shell: a user added with --password-stdin signs in; passwd and
disable end their sessions; mistakes are named and change nothing."""

from __future__ import annotations

import secrets

import pytest
from sqlmodel import select

from notifier.audit import service as audit
from notifier.users.models import User
from notifier.users.service import actor_of
from tests.support.stack import Stack
from tests.support.web import PASSWORD, Browser, enrol, new_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)


def test_a_user_added_from_the_shell_signs_in_until_disabled(stack: Stack) -> None:
    username = f"Chen-{secrets.token_hex(3)}"
    added = stack.cli("users", "add", "--username", username, "--role", "supervisor",
        "--name", "陳課長", "--language", "en", "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    user_id = int(added.stdout.strip())
    stored_name = username.lower()
    with Browser(stack.base_url) as browser:
        # A supervisor sets up a TOTP key at the first sign-in.
        assert browser.sign_in(username, PASSWORD).headers["location"] == "/sign-in/enrol"
        with stack.db() as session:
            row = session.get(User, user_id)
            assert row is not None
        enrol(stack, row)
        assert browser.sign_in(username, PASSWORD).headers["location"] == "/agent"
        listed = stack.cli("users", "list")
        assert f"{user_id}\t{stored_name}\t陳課長\tsupervisor\t-\ten\tactive\t" in listed.stdout

        changed = stack.cli(
            "users", "passwd", str(user_id), "--password-stdin", stdin="a new passphrase\n"
        )
        assert changed.returncode == 0, changed.stderr
        assert browser.get("/").headers["location"] == "/sign-in"  # the change ended the session
        assert browser.sign_in(username, PASSWORD).status_code == 200  # the old one is refused
        assert browser.sign_in(username, "a new passphrase").status_code == 303

        disabled = stack.cli("users", "disable", str(user_id))
        assert disabled.returncode == 0, disabled.stderr
        assert browser.get("/").headers["location"] == "/sign-in"
        refused = browser.sign_in(username, "a new passphrase")
        # In the browser's language: the account's would tell that the account exists.
        assert "帳號或密碼錯誤。" in refused.text
    with stack.db() as session:
        by_cli = audit.list_entries(
            session, actor=audit.CLI, target=f"user {user_id} ({stored_name})"
        )
    assert [e.action for e in by_cli.entries] == [
        "user.disabled", "user.password_changed", "user.created",
    ]  # fmt: skip
    assert (
        f"{user_id}\t{stored_name}\t陳課長\tsupervisor\t-\ten\tdisabled\t"
        in stack.cli("users", "list").stdout
    )


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--role", "agent"], PASSWORD, "--agent"),
        (["--role", "agent", "--agent", "999999"], PASSWORD, "no active agent 999999"),
        (["--role", "producer"], PASSWORD, "--role"),
        (["--role", "ops"], "short", "at least 10 characters"),
        (["--role", "ops"], " " * 10, "password"),
        (["--role", "ops"], "1234567890", "most common passwords"),
        (["--role", "admin"], "Password2026", "too easy to guess"),
        (["--role", "ops", "--language", "fr"], PASSWORD, "--language"),
    ],
)
def test_mistakes_in_users_add_are_named_and_add_nobody(
    stack: Stack, args: list[str], stdin: str, message: str
) -> None:
    username = f"x-{secrets.token_hex(4)}"
    answer = stack.cli(
        "users", "add", "--username", username, *args, "--password-stdin", stdin=stdin
    )
    assert answer.returncode != 0
    assert message in " ".join(answer.stderr.replace("│", " ").split()), answer.stderr
    with stack.db() as session:
        assert session.exec(select(User).where(User.username == username)).first() is None


def test_passwd_and_disable_name_an_unknown_user(stack: Stack) -> None:
    for args in (
        ["passwd", "999999", "--password-stdin"],
        ["disable", "999999"],
        ["reset-totp", "999999"],
    ):
        answer = stack.cli("users", *args, stdin=PASSWORD)
        assert answer.returncode != 0 and "no user 999999" in answer.stderr


def test_an_admin_resets_a_lost_totp_key_and_the_user_enrols_again(stack: Stack) -> None:
    user = new_user(stack, "admin")
    with Browser(stack.base_url) as browser:
        assert browser.sign_in(user.username, PASSWORD).headers["location"] == "/ops"

        answer = stack.cli("users", "reset-totp", str(user.id))

        assert answer.returncode == 0, answer.stderr
        assert "TOTP key removed" in answer.stdout
        assert browser.get("/").headers["location"] == "/sign-in"  # the reset ended the session
        again = browser.sign_in(user.username, PASSWORD)
        assert again.headers["location"] == "/sign-in/enrol"
    with stack.db() as session:
        row = session.get(User, user.id)
        assert row is not None and row.totp_secret is None and row.totp_confirmed_at is None
        (entry,) = audit.list_entries(
            session, action="user.totp_reset", target=actor_of(user)
        ).entries
    assert entry.actor == audit.CLI and entry.detail == {"had_key": True}
    listed = stack.cli("users", "list").stdout.splitlines()
    (line,) = [row for row in listed if row.startswith(f"{user.id}\t")]
    assert line.endswith("\tpassword")  # no longer "password+totp"
