"""Headless Chromium for the browser tests: Debian's chromium and chromedriver, driven by Selenium.

``driver`` is one browser for a whole test module. It needs /usr/bin/chromium
and /usr/bin/chromedriver (Debian's chromium and chromium-driver; .ci/run
installs them) and selenium (the dev extra). Without them the module's tests
skip with the reason printed, except under CI=true, where they fail.

``screenshot`` saves the whole page, beyond the viewport, as
``test-output/screenshots/<name>.png`` at the repository root, where it stays
after the run (CI can keep the folder); the run's summary lists the files.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
WINDOW = (1280, 900)
"""The window a module's browser opens with: a desktop screen."""

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

_SAVED = pytest.StashKey[list[Path]]()


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").is_file():
        return "chromium is not installed (Debian package chromium)"
    if shutil.which("chromedriver") is None and not Path("/usr/bin/chromedriver").is_file():
        return "chromedriver is not installed (Debian package chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def driver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One headless Chromium for the whole module."""
    tests = request.module.__name__.rpartition(".")[2]
    reason = _missing()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{tests} cannot run under CI: {reason}")
        print(f"skipping {tests}: {reason}")
        pytest.skip(reason)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    # The Debian chromedriver, by path: selenium must not look for (or download) one.
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, driver: Any) -> Callable[[str], Path]:
    """``screenshot(name)`` saves the page as it is now, whole, and returns the file."""

    def save(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        width, height = driver.execute_script(
            "const e = document.documentElement;"
            "return [Math.max(e.scrollWidth, window.innerWidth),"
            " Math.max(e.scrollHeight, document.body.scrollHeight)];"
        )
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        request.config.stash.setdefault(_SAVED, []).append(path)
        print(f"screenshot: {path}")
        return path

    return save


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Where the screenshots are, in the run's log (a passing test's prints are not shown)."""
    saved = config.stash.get(_SAVED, [])
    if saved:
        terminalreporter.section("browser screenshots")
        for path in saved:
            terminalreporter.write_line(str(path))
