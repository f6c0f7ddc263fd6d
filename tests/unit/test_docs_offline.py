"""/docs and /redoc work with no internet: every script and style they name is served by the
app itself, nothing in them points at another site, and a Content-Security-Policy that
names this site alone holds them to that."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from notifier.app import create_app
from notifier.settings import Settings


class _Assets(HTMLParser):
    """The URLs a page loads: script ``src``, link ``href``, ReDoc's ``spec-url``, Swagger's
    ``data-openapi``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href", "spec-url", "data-openapi"):
            if named.get(attribute):
                self.urls.append(str(named[attribute]))
        self._in_script_without_src = tag == "script" and not named.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path)))


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"/static/apidocs/swagger-ui-bundle.js", "/static/apidocs/swagger-ui.css"}),
        ("/redoc", {"/static/apidocs/redoc.standalone.js"}),
    ],
)
def test_the_api_docs_load_only_what_the_app_serves(
    client: TestClient, page: str, expected: set[str]
) -> None:
    answer = client.get(page)
    assert answer.status_code == 200
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", answer.text, re.IGNORECASE), (
        "an external URL in " + page
    )
    assets = _Assets()
    assets.feed(answer.text)
    assert expected <= set(assets.urls)
    assert assets.inline_scripts == 0, "an inline script: the page's policy refuses it"
    for url in assets.urls:
        assert url.startswith("/"), url
        loaded = client.get(url)
        assert loaded.status_code == 200, url
        assert loaded.content, url
    assert client.get("/openapi.json").json()["info"]["title"] == "notifier"


def test_the_api_docs_carry_a_policy_naming_this_site_alone(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        headers = client.get(page).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self';" in policy, page
        assert "http" not in policy and "*" not in policy, page
        assert "frame-ancestors 'none'" in policy
        assert headers["x-content-type-options"] == "nosniff"


def test_the_swagger_assets_are_the_real_builds(client: TestClient) -> None:
    bundle = client.get("/static/apidocs/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    assert bundle.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert "Redoc" in client.get("/static/apidocs/redoc.standalone.js").text
