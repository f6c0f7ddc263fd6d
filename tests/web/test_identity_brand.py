"""The pages' header names the utility (Settings.identity), in the page's language."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Stack
from tests.support.web import Browser

pytestmark = pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)


@pytest.fixture
def browser(stack: Stack) -> Iterator[Browser]:
    with Browser(stack.base_url) as b:
        yield b


@pytest.mark.parametrize(
    ("lang", "name"), [("zh-TW", "示範電力公司"), ("en", "Demo Power Company")]
)
def test_the_header_and_title_name_the_utility_in_the_page_s_language(
    stack: Stack, browser: Browser, lang: str, name: str
) -> None:
    browser.client.cookies.set("lang", lang)

    page = browser.get("/sign-in")

    assert page.status_code == 200
    assert f'<a class="brand" href="/">{name}</a>' in page.text
    # A browser tab, a bookmark and the history say whose page it is too.
    assert f" · {name}</title>" in page.text
