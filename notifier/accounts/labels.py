"""Protections and spoken languages as people read them, in zh-TW (the default) and en.

Pages, agents' lists and exports show these labels; the API and the database
keep the codes (``life_support``, ``nan``: ``events.schema.PROTECTIONS`` and
``SPOKEN_LANGUAGES``; tests/unit hold every code to a label).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "LABEL_LANGUAGES",
    "PROTECTION_LABELS",
    "SPOKEN_LANGUAGE_LABELS",
    "protection_label",
    "protections_text",
    "spoken_language_label",
]

LABEL_LANGUAGES = ("zh-TW", "en")
PROTECTION_LABELS: dict[str, dict[str, str]] = {
    "zh-TW": {
        "life_support": "維生器材", "low_income": "低收入戶", "disabled": "身心障礙",
        "elderly": "高齡",
    },
    "en": {
        "life_support": "life support", "low_income": "low income", "disabled": "disabled",
        "elderly": "elderly",
    },
}  # fmt: skip
SPOKEN_LANGUAGE_LABELS: dict[str, dict[str, str]] = {
    "zh-TW": {
        "zh-TW": "華語", "nan": "台語", "hak": "客語", "en": "英語", "vi": "越南語",
        "id": "印尼語",
    },
    "en": {
        "zh-TW": "Mandarin", "nan": "Taiwanese Hokkien", "hak": "Hakka", "en": "English",
        "vi": "Vietnamese", "id": "Indonesian",
    },
}  # fmt: skip


def protection_label(code: str, language: str = "zh-TW") -> str:
    """``life_support`` → 維生器材 (``en``: life support); an unknown code as it is."""
    return PROTECTION_LABELS.get(language, PROTECTION_LABELS["zh-TW"]).get(code, code)


def protections_text(codes: Iterable[str], language: str = "zh-TW") -> str:
    """The labels joined for one cell: ``維生器材、高齡`` (``en``: ``life support, elderly``)."""
    joiner = "、" if language == "zh-TW" else ", "
    return joiner.join(protection_label(code, language) for code in codes)


def spoken_language_label(code: str | None, language: str = "zh-TW") -> str:
    """``nan`` → 台語 (``en``: Taiwanese Hokkien); None → an empty text."""
    if code is None:
        return ""
    return SPOKEN_LANGUAGE_LABELS.get(language, SPOKEN_LANGUAGE_LABELS["zh-TW"]).get(code, code)
