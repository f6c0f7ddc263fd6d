"""Every code the pages show has a word, and every word a zh-TW translation."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from channels import CHANNEL_NAMES
from notifier.deliveries.stats import STATUS_ORDER
from notifier.events.schema import EVENT_TYPES
from notifier.queues.celery_config import ALL_QUEUES
from notifier.web import labels
from notifier.web.i18n import translations

NOTIFIER = Path(labels.__file__).resolve().parents[1]
TAIPEI = ZoneInfo("Asia/Taipei")


def _audit_actions() -> set[str]:
    """Every ``action="…"`` the code writes to the audit trail."""
    found: set[str] = set()
    for path in NOTIFIER.rglob("*.py"):
        found |= set(re.findall(r'action="([a-z_]+\.[a-z_.]+|complained)"', path.read_text()))
    return found


@pytest.mark.parametrize(
    ("group", "codes"),
    [
        ("status", STATUS_ORDER),
        ("channel", CHANNEL_NAMES),
        ("event", EVENT_TYPES),
        ("queue", ALL_QUEUES),
        ("action", tuple(sorted(_audit_actions()))),
    ],
)
def test_every_code_of_the_service_has_a_word_in_zh_tw(group: str, codes: tuple[str, ...]) -> None:
    zh = translations("zh-TW")
    missing = [c for c in codes if c not in labels.GROUPS[group]]
    assert not missing, f"no {group} word for {missing}"
    untranslated = [c for c in codes if labels.word(zh, group, c) == labels.GROUPS[group][c]]
    # A word the same in both languages (a brand) is allowed; a code never is.
    assert not [c for c in untranslated if re.search(r"[a-z]", labels.word(zh, group, c))], (
        untranslated
    )


def test_every_english_word_has_a_zh_tw_translation() -> None:
    zh = translations("zh-TW")
    words = {w for group in labels.GROUPS.values() for w in group.values()}
    brands = {"Twilio"}
    assert sorted(w for w in words - brands if zh.gettext(w) == w) == []


def test_a_timeline_detail_reads_as_words_in_the_page_language() -> None:
    detail = {"error": "21211: invalid number", "code": 21211, "permanent": True,
              "note": "planned by policy", "until": "2026-12-02T00:00:00+00:00",
              "retried_as": 12, "fallback": "postcard delivery 13", "attempt_began": None}  # fmt: skip
    zh = labels.details(translations("zh-TW"), detail, TAIPEI)
    assert zh == [
        ("錯誤", "21211: invalid number", None),
        ("代碼", "21211", None),
        ("永久失敗", "是", None),
        ("備註", "依發送規則規劃", None),
        ("直到", "2026-12-02 08:00:00 Asia/Taipei", None),
        ("重送為發送", "12", "/ops/deliveries/12"),
        ("備援管道", "明信片發送 13", None),
        ("開始嘗試", "—", None),
    ]
    en = dict((k, v) for k, v, _ in labels.details(translations("en"), detail, TAIPEI))
    assert en["permanent failure"] == "yes" and en["note"] == "planned by policy"


def test_an_area_is_named_from_config_and_an_unknown_one_by_its_code() -> None:
    assert labels.area_name("zh-TW", "toufen") == "頭份服務所"
    assert labels.area_name("en", "toufen") == "Toufen"
    assert labels.area_name("zh-TW", "area-0123") == "area-0123"
    assert labels.area_name("zh-TW", None) == "—"


def test_a_detail_naming_a_phone_or_email_is_masked() -> None:
    [(_, text, _)] = labels.details(
        translations("zh-TW"), {"error": "refused +886912345678 a@example.com"}, TAIPEI
    )
    assert "+886912345678" not in text and "a@example.com" not in text
