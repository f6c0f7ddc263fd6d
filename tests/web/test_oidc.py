"""Staff sign in through the utility's directory: a real OpenID Connect provider, run locally.

The provider is the npm package ``oidc-provider`` (tests/support/oidc), started
with node on a free port for each test, with one client (this stack) and the
accounts the test writes. Each test walks the whole flow as a browser does:
our sign-in page, the provider's login and consent forms, back to our callback,
which verifies the ID token against the provider's JWKS. Without node or npm
the tests skip, saying why; under CI=true they fail instead.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import select

from notifier.settings import OidcSettings
from notifier.users.directory import CALLBACK_PATH
from notifier.users.models import User
from tests.support.stack import IN_CI, Stack, free_port, wait_until
from tests.support.web import PASSWORD, Browser, audit_of, new_user

pytestmark = pytest.mark.parametrize(
    "stack", ["sqlite-filesystem", "postgres-redis"], indirect=True
)

PROVIDER_DIR = Path(__file__).resolve().parents[1] / "support" / "oidc"
CLIENT_ID = "notifier-tests"
DIRECTORY = "Utility ID"
ROLE_MAP = {
    "notifier-ops": "ops",
    "notifier-supervisors": "supervisor",
    "notifier-admins": "admin",
}


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the OIDC provider cannot run under CI: {reason}")
    pytest.skip(reason)


def _installed() -> None:
    """node and the provider package, installed from package-lock.json if need be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node or npm is not installed (the OIDC tests run oidc-provider)")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        done = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund"],
            cwd=PROVIDER_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            _unavailable(f"npm ci in {PROVIDER_DIR} failed: {done.stderr[-500:]}")


@dataclass
class Directory:
    """The running provider and the accounts file it reads at each sign-in."""

    issuer: str
    accounts_file: Path
    client_secret: str

    def add(self, login: str, groups: list[str], name: str = "") -> str:
        accounts = json.loads(self.accounts_file.read_text())
        accounts[login] = {"groups": groups, "name": name or login}
        self.accounts_file.write_text(json.dumps(accounts))
        return login


@pytest.fixture
def directory(stack: Stack, tmp_path: Path) -> Iterator[Directory]:
    """oidc-provider on a free port, with this stack as its client; the stack pointed at it."""
    _installed()
    port = free_port()
    accounts = tmp_path / "accounts.json"
    accounts.write_text("{}")
    secret = secrets.token_urlsafe(24)
    log = tmp_path / "provider.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["node", "provider.js"],
            cwd=PROVIDER_DIR,
            env={
                "PATH": str(Path(shutil.which("node") or "node").parent),
                "OIDC_PORT": str(port),
                "OIDC_CLIENT_ID": CLIENT_ID,
                "OIDC_CLIENT_SECRET": secret,
                "OIDC_REDIRECT_URI": stack.settings.public_url + CALLBACK_PATH,
                "OIDC_ACCOUNTS_FILE": str(accounts),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    issuer = f"http://127.0.0.1:{port}"
    settings = stack.runtime.settings
    try:
        wait_until(
            lambda: "ready" in log.read_text() or process.poll() is not None,
            timeout=60,
            what="the OIDC provider",
        )
        assert process.poll() is None, log.read_text()
        stack.runtime.settings = settings.model_copy(
            update={
                "oidc": OidcSettings(
                    issuer=issuer,
                    client_id=CLIENT_ID,
                    client_secret=SecretStr(secret),
                    name=DIRECTORY,
                    scopes=["openid", "profile", "groups"],
                    roles_claim="groups",
                    role_map=ROLE_MAP,
                )
            }
        )
        yield Directory(issuer=issuer, accounts_file=accounts, client_secret=secret)
    finally:
        stack.runtime.settings = settings
        process.terminate()
        process.wait(timeout=30)


def _form(page: httpx.Response) -> tuple[str, dict[str, str]]:
    """The first form of a provider page: its absolute action and its hidden inputs."""
    found = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert found, f"no form on {page.url}:\n{page.text[:2000]}"
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    return urljoin(str(page.url), unescape(found.group(1))), hidden


def walk(browser: Browser, stack: Stack, login: str, *, next: str = "") -> httpx.Response:
    """From our sign-in button through the provider's forms; our callback's answer."""
    page = browser.get("/sign-in")
    assert f"Sign in with {DIRECTORY}" in page.text or f"以{DIRECTORY}登入" in page.text
    answer = browser.get("/sign-in/oidc", params={"next": next} if next else None)
    assert answer.status_code == 303, answer.text
    callback = stack.settings.public_url + CALLBACK_PATH
    for _ in range(20):
        if answer.status_code in (301, 302, 303):
            url = urljoin(str(answer.url), answer.headers["location"])
            if url.startswith(callback):
                return browser.client.get(url)
            answer = browser.client.get(url)
            continue
        assert answer.status_code == 200, f"{answer.url}: {answer.status_code}\n{answer.text}"
        action, fields = _form(answer)
        if fields.get("prompt") == "login":
            fields.update(login=login, password="any")  # devInteractions: any password
        answer = browser.client.post(action, data=fields)
    raise AssertionError("the provider never sent the browser back")


def directory_user(stack: Stack, login: str) -> User:
    with stack.db() as session:
        row = session.exec(select(User).where(User.username == login)).first()
        assert row is not None, f"no user {login}"
        return row


def test_a_directory_user_signs_in_with_the_role_their_group_maps_to(
    stack: Stack, directory: Directory
) -> None:
    login = directory.add(f"lin-{secrets.token_hex(3)}", ["staff", "notifier-ops"], "林美玲")
    with Browser(stack.base_url) as browser:
        answer = walk(browser, stack, login, next="/ops/deliveries?status=failed")

        assert (answer.status_code, answer.headers["location"]) == (
            303,
            "/ops/deliveries?status=failed",
        )
        assert browser.get("/").headers["location"] == "/ops"
        assert "林美玲" in browser.get("/ops").text
    user = directory_user(stack, login)
    assert user.role == "ops" and user.password_hash == "" and user.display_name == "林美玲"
    assert user.directory_subject == f"{directory.issuer} {login}"
    assert audit_of(stack, user)[:2] == ["user.created", "user.sign_in"]
    with Browser(stack.base_url) as thief:  # no password signs a directory user in
        assert thief.sign_in(login, "").status_code in (200, 422)
        assert "notifier_session" not in thief.client.cookies


def test_the_role_follows_the_directory_at_every_sign_in(
    stack: Stack, directory: Directory
) -> None:
    login = directory.add(f"chen-{secrets.token_hex(3)}", ["notifier-ops"])
    with Browser(stack.base_url) as browser:
        assert walk(browser, stack, login).headers["location"] == "/ops"
    directory.add(login, ["notifier-ops", "notifier-supervisors"])  # promoted: highest wins
    with Browser(stack.base_url) as browser:
        assert walk(browser, stack, login).headers["location"] == "/agent"
    user = directory_user(stack, login)
    assert user.role == "supervisor"
    assert "user.role_changed" in audit_of(stack, user)

    directory.add(login, ["staff"])  # left every group of the service
    with Browser(stack.base_url) as browser:
        refused = walk(browser, stack, login)
        assert refused.status_code == 403
        assert "no role in this service" in refused.text or "沒有角色" in refused.text
        assert "notifier_session" not in browser.client.cookies


def test_someone_whose_groups_map_to_no_role_gets_a_clear_page_and_no_account(
    stack: Stack, directory: Directory
) -> None:
    login = directory.add(f"wu-{secrets.token_hex(3)}", ["staff", "billing"])
    with Browser(stack.base_url) as browser:
        browser.post("/language", {"lang": "en", "next": "/sign-in"})

        refused = walk(browser, stack, login)

        assert refused.status_code == 403
        assert f"{DIRECTORY} signed you in, but your account there has no role" in refused.text
        assert "notifier_session" not in browser.client.cookies
    with stack.db() as session:
        assert session.exec(select(User).where(User.username == login)).first() is None


def test_a_local_account_of_the_same_name_is_not_taken_over(
    stack: Stack, directory: Directory
) -> None:
    local = new_user(stack, "ops")
    directory.add(local.username, ["notifier-admins"])
    with Browser(stack.base_url) as browser:
        refused = walk(browser, stack, local.username)
        assert refused.status_code == 403 and "notifier_session" not in browser.client.cookies
    assert directory_user(stack, local.username).role == "ops"  # unchanged, still local


def test_an_answer_this_browser_did_not_ask_for_is_refused(
    stack: Stack, directory: Directory
) -> None:
    login = directory.add(f"ho-{secrets.token_hex(3)}", ["notifier-ops"])
    with Browser(stack.base_url) as victim, Browser(stack.base_url) as attacker:
        # The attacker's own code, sent to the victim's browser (login CSRF).
        start = attacker.get("/sign-in/oidc")
        url = start.headers["location"]
        for _ in range(20):
            answer = attacker.client.get(url)
            if answer.status_code in (301, 302, 303):
                url = urljoin(str(answer.url), answer.headers["location"])
                if CALLBACK_PATH in url:
                    break
                continue
            action, fields = _form(answer)
            if fields.get("prompt") == "login":
                fields.update(login=login, password="any")
            posted = attacker.client.post(action, data=fields)
            url = urljoin(str(posted.url), posted.headers["location"])
        assert CALLBACK_PATH in url and "code" in parse_qs(urlsplit(url).query)

        victim.get("/sign-in/oidc")  # the victim's browser has a sign-in of its own under way
        forged = victim.client.get(url)

        assert forged.status_code == 403
        assert "notifier_session" not in victim.client.cookies


def test_with_the_directory_only_passwords_are_refused(stack: Stack, directory: Directory) -> None:
    stack.runtime.settings = stack.runtime.settings.model_copy(
        update={"oidc": stack.runtime.settings.oidc.model_copy(update={"only": True})}
    )
    user = new_user(stack, "ops")
    with Browser(stack.base_url) as browser:
        page = browser.get("/sign-in")
        assert 'name="password"' not in page.text and "/sign-in/oidc" in page.text
        cookie = browser.client.cookies["notifier_sign_in"]
        refused = browser.post(
            "/sign-in", {"username": user.username, "password": PASSWORD, "csrf_token": cookie}
        )
        assert refused.status_code == 403 and "notifier_session" not in browser.client.cookies
        login = directory.add(f"ko-{secrets.token_hex(3)}", ["notifier-ops"])
        assert walk(browser, stack, login).headers["location"] == "/ops"
