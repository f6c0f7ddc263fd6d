"""/docs and /redoc in a real Chromium, on a machine with no route to any CDN: both draw the
API, and the pages' Content-Security-Policy refuses nothing they need."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from notifier.app import create_app
from notifier.settings import Settings

# Recorded from the first script on: a violation during load would otherwise go unseen.
_RECORD_VIOLATIONS = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("docs-data")))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _open(driver: Any, url: str) -> None:
    # Each call adds the script once more: listeners pile up, so compare as sets.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORD_VIOLATIONS})
    driver.get(url)


@pytest.mark.parametrize("width", [1366, 390])
def test_swagger_ui_draws_the_api_offline(
    driver: Any, screenshot: Any, base_url: str, width: int
) -> None:
    driver.set_window_size(width, 900)
    _open(driver, base_url + "/docs")
    WebDriverWait(driver, 20).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    )
    paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/v1/events" in {p.replace("\u200b", "") for p in paths}
    assert "notifier" in driver.find_element(By.CSS_SELECTOR, ".info .title").text
    assert set(driver.execute_script("return window.__violations")) == set()
    shot: Path = screenshot(f"docs-swagger-{width}")
    assert shot.stat().st_size > 0


@pytest.mark.parametrize("width", [1366, 390])
def test_redoc_draws_the_api_offline(
    driver: Any, screenshot: Any, base_url: str, width: int
) -> None:
    driver.set_window_size(width, 900)
    _open(driver, base_url + "/redoc")
    WebDriverWait(driver, 30).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "h1")
            and "notifier" in d.find_element(By.CSS_SELECTOR, "h1").text
        )
    )
    assert "/v1/events" in driver.page_source
    # ReDoc's bundle draws a "by Redocly" badge from its CDN: the policy refuses it (no request
    # leaves the machine) and ReDoc hides the image when it fails. Nothing else is refused.
    refused = set(driver.execute_script("return window.__violations"))
    assert refused <= {"img-src https://cdn.redoc.ly/redoc/logo-mini.svg"}
    screenshot(f"docs-redoc-{width}")
