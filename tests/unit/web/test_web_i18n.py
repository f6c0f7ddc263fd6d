"""Page texts: every text a template translates has a zh-TW entry; catalogs merge per folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notifier.settings import IdentitySettings
from notifier.users.models import User
from notifier.web.deps import TEMPLATES_DIR, sections_of, templates
from notifier.web.i18n import (
    LOCALES_DIR,
    CatalogError,
    Translations,
    load_catalog,
    pick_language,
    translations,
)

TEMPLATE_FILES = sorted(TEMPLATES_DIR.rglob("*.html"))


def texts_of(template: Path) -> list[tuple[int, str]]:
    """(line, English text) of each ``_()``, ``gettext``, ``ngettext`` and ``{% trans %}``."""
    found: list[tuple[int, str]] = []
    for line, _function, message in templates.extract_translations(template.read_text("utf-8")):
        for text in message if isinstance(message, tuple) else (message,):
            if text:  # ngettext's count argument shows as None
                found.append((line, text))
    return found


@pytest.mark.parametrize(
    "template", TEMPLATE_FILES, ids=[str(p.relative_to(TEMPLATES_DIR)) for p in TEMPLATE_FILES]
)
def test_every_text_of_the_pages_has_a_zh_tw_translation(template: Path) -> None:
    catalog = load_catalog(LOCALES_DIR / "zh-TW")
    missing = [
        f"line {line}: {text!r}" for line, text in texts_of(template) if not catalog.get(text)
    ]
    assert not missing, (
        f"{template.name} shows texts with no zh-TW translation; add them to a file in "
        f"notifier/web/locales/zh-TW/: {', '.join(missing)}"
    )


def test_the_templates_do_have_texts_to_check() -> None:
    assert any(texts_of(t) for t in TEMPLATE_FILES), "the extraction found nothing: is _() renamed?"


def test_every_catalog_file_of_a_language_is_merged(tmp_path: Path) -> None:
    (tmp_path / "common.json").write_text(json.dumps({"Sign out": "登出"}), "utf-8")
    (tmp_path / "ops.json").write_text(
        json.dumps({"Delivery log": "發送紀錄", "Sign out": "登出"}), "utf-8"
    )
    assert load_catalog(tmp_path) == {"Sign out": "登出", "Delivery log": "發送紀錄"}


def test_two_files_that_disagree_on_a_text_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"Cases": "案件"}), "utf-8")
    (tmp_path / "b.json").write_text(json.dumps({"Cases": "個案"}), "utf-8")
    with pytest.raises(CatalogError, match=r"b\.json translates 'Cases' as '個案', a\.json"):
        load_catalog(tmp_path)


@pytest.mark.parametrize("content", ['["a list"]', '{"nested": {"x": "y"}}', "{not json"])
def test_a_catalog_that_is_not_a_flat_object_of_texts_is_refused(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / "bad.json").write_text(content, "utf-8")
    with pytest.raises(CatalogError, match=r"bad\.json"):
        load_catalog(tmp_path)


def test_a_text_with_no_translation_is_shown_in_english() -> None:
    zh = Translations("zh-TW", {"Sign out": "登出", "Empty": ""})
    assert zh.gettext("Sign out") == "登出"
    assert zh.gettext("Not translated yet") == "Not translated yet"
    assert zh.gettext("Empty") == "Empty"
    assert zh.ngettext("%(n)d case", "%(n)d cases", 2) == "%(n)d cases"
    assert translations("en").gettext("Sign out") == "Sign out"
    assert translations("fr").language == "zh-TW"


def test_the_cookie_beats_the_users_language_and_zh_tw_is_the_default() -> None:
    english_user = User(
        username="a", display_name="A", password_hash="x", role="ops", language="en"
    )
    assert pick_language(None, None) == "zh-TW"
    assert pick_language(None, english_user) == "en"
    assert pick_language("zh-TW", english_user) == "zh-TW"
    assert pick_language("fr", english_user) == "en"


_OPS = [
    "/ops", "/ops/dashboard", "/ops/unreachable", "/ops/print-batches", "/ops/sweeps",
    "/ops/dead-letters", "/ops/audit",
]  # fmt: skip


@pytest.mark.parametrize(
    ("role", "links"),
    [
        ("ops", _OPS),
        ("agent", ["/agent"]),
        ("supervisor", [*_OPS, "/agent", "/agent/holds", "/agent/ladder"]),
        ("admin", [*_OPS, "/agent", "/agent/holds", "/agent/ladder"]),
    ],
)
def test_the_header_links_follow_the_role(role: str, links: list[str]) -> None:
    user = User(username="lin", display_name="林建宏", password_hash="x", role=role)
    html = templates.get_template("base.html").render(
        user=user,
        csrf_token="t0ken",
        language="zh-TW",
        languages={"zh-TW": "中文", "en": "English"},
        translations=translations("zh-TW"),
        sections=sections_of(user),
        path="/ops",
        here="/ops",
        utility=IdentitySettings(),
    )
    nav = html[html.index("<nav") : html.index("</nav>")]
    assert [part.split('"')[0] for part in nav.split('href="')[1:]] == links
    assert "林建宏" in html and 'value="t0ken"' in html and "登出" in html
    if "/agent/holds" in links:
        assert "暫停催繳" in nav and "催繳程序" in nav
