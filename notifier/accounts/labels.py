"""Protections and spoken languages as people read them, in zh-TW (the default) and en.

Pages, agents' lists and exports show these labels; the API and the database
keep the codes (``life_support``, ``nan``).
"""

from __future__ import annotations

from collections.abc import Iterable

from notifier.events.schema import PROTECTIONS, SPOKEN_LANGUAGES

__all__ = ["LABEL_LANGUAGES", "protection_label", "protections_text", "spoken_language_label"]

LABEL_LANGUAGES = ("zh-TW", "en")
_PROTECTIONS: dict[str, dict[str, str]] = {
    "zh-TW": {
        "life_support": "維生器材", "low_income": "低收入戶", "disabled": "身心障礙",
        "elderly": "高齡",
    },
    "en": {
        "life_support": "life support", "low_income": "low income", "disabled": "disabled",
        "elderly": "elderly",
    },
}  # fmt: skip
_SPOKEN: dict[str, dict[str, str]] = {
    "zh-TW": {
        "zh-TW": "華語", "nan": "台語", "hak": "客語", "en": "英語", "vi": "越南語",
        "id": "印尼語",
    },
    "en": {
        "zh-TW": "Mandarin", "nan": "Taiwanese Hokkien", "hak": "Hakka", "en": "English",
        "vi": "Vietnamese", "id": "Indonesian",
    },
}  # fmt: skip
assert all(set(names) == set(PROTECTIONS) for names in _PROTECTIONS.values())
assert all(set(names) == set(SPOKEN_LANGUAGES) for names in _SPOKEN.values())


def protection_label(code: str, language: str = "zh-TW") -> str:
    """``life_support`` → 維生器材 (``en``: life support); an unknown code as it is."""
    return _PROTECTIONS.get(language, _PROTECTIONS["zh-TW"]).get(code, code)


def protections_text(codes: Iterable[str], language: str = "zh-TW") -> str:
    """The labels joined for one cell: ``維生器材、高齡`` (``en``: ``life support, elderly``)."""
    joiner = "、" if language == "zh-TW" else ", "
    return joiner.join(protection_label(code, language) for code in codes)


def spoken_language_label(code: str | None, language: str = "zh-TW") -> str:
    """``nan`` → 台語 (``en``: Taiwanese Hokkien); None → an empty text."""
    if code is None:
        return ""
    return _SPOKEN.get(language, _SPOKEN["zh-TW"]).get(code, code)
