"""The pages' text in zh-TW (the default) and en.

Templates write English source text, ``{{ _("Sign out") }}`` (newstyle
gettext: ``{{ _("Hello %(name)s", name=user.display_name) }}``, a literal
``%`` written ``%%``). Each language's catalog is every
``locales/<lang>/*.json`` file merged, each a flat ``{"English source text":
"翻譯"}``: a page module brings its own file (``locales/zh-TW/ops.json``) and
touches no one else's. Two files that translate one text differently are an
error at load time. A text with no translation is shown in English.
``tests/unit/web/test_web_i18n.py`` holds every ``_("…")`` of the templates to a
zh-TW entry.

The language is the ``lang`` cookie the switcher sets, else the signed-in
user's, else zh-TW.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from notifier.users.models import User
from notifier.users.service import LANGUAGES

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "LOCALES_DIR",
    "CatalogError",
    "Translations",
    "load_catalog",
    "pick_language",
    "translations",
]

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DEFAULT_LANGUAGE = "zh-TW"
LANGUAGE_NAMES = {"zh-TW": "中文", "en": "English"}
"""Each language in its own words, for the switcher."""


class CatalogError(ValueError):
    """A catalog file that is not a flat JSON object of texts, or that contradicts another."""


class Translations:
    """gettext-style lookups in one language's catalog, falling back to the English source."""

    def __init__(self, language: str, messages: Mapping[str, str]) -> None:
        self.language = language
        self.messages = messages

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.gettext(singular if n == 1 else plural)


def load_catalog(folder: Path) -> dict[str, str]:
    """Every ``*.json`` catalog in ``folder`` merged (none: an empty catalog)."""
    merged: dict[str, str] = {}
    source: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{path}: not JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise CatalogError(f'{path}: want one object of texts, {{"English": "翻譯"}}')
        for text, translated in data.items():
            if merged.get(text, translated) != translated:
                raise CatalogError(
                    f"{path.name} translates {text!r} as {translated!r}, "
                    f"{source[text]} as {merged[text]!r}"
                )
            merged[text] = translated
            source[text] = path.name
    return merged


@cache
def translations(language: str) -> Translations:
    """The catalog of ``language`` (zh-TW for one we do not have), read once per process."""
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    return Translations(language, load_catalog(LOCALES_DIR / language))


def pick_language(cookie: str | None, user: User | None) -> str:
    """The switcher's cookie, else the user's language, else zh-TW."""
    for choice in (cookie, user.language if user else None):
        if choice is not None and choice in LANGUAGES:
            return choice
    return DEFAULT_LANGUAGE
