"""No page or API answer is kept in a cache; deployed, browsers are told to use HTTPS only."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from notifier.app import create_app
from notifier.settings import Settings


def client(tmp_path: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path, **settings)))  # type: ignore[arg-type]


def test_pages_and_api_answers_are_not_stored_but_static_files_may_be(tmp_path: Path) -> None:
    with client(tmp_path) as app:
        for path in ("/sign-in", "/ops", "/v1/deliveries", "/healthz", "/no-such-page"):
            answer = app.get(path, follow_redirects=False)
            assert answer.headers.get("Cache-Control") == "no-store", (path, answer.status_code)
        assert "no-store" not in app.get("/static/app.css").headers.get("Cache-Control", "")
        assert "Strict-Transport-Security" not in app.get("/sign-in").headers


def test_deployed_every_answer_asks_for_https_only(tmp_path: Path) -> None:
    deployed = {"mode": "deployed", "pay_link_key": SecretStr("a-real-pay-link-key")}
    with client(tmp_path, **deployed) as app:
        for path in ("/sign-in", "/v1/deliveries", "/static/app.css"):
            hsts = app.get(path, follow_redirects=False).headers["Strict-Transport-Security"]
            assert hsts == "max-age=31536000; includeSubDomains"
