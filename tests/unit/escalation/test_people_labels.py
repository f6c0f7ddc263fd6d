"""Protections and spoken languages have a label in each language the pages speak."""

from __future__ import annotations

import pytest

from notifier.accounts.labels import (
    LABEL_LANGUAGES,
    PROTECTION_LABELS,
    SPOKEN_LANGUAGE_LABELS,
    protections_text,
    spoken_language_label,
)
from notifier.events.schema import PROTECTIONS, SPOKEN_LANGUAGES


@pytest.mark.parametrize("language", LABEL_LANGUAGES)
def test_every_code_has_its_own_label(language: str) -> None:
    assert set(PROTECTION_LABELS[language]) == set(PROTECTIONS)
    assert set(SPOKEN_LANGUAGE_LABELS[language]) == set(SPOKEN_LANGUAGES)
    assert len(set(PROTECTION_LABELS[language].values())) == len(PROTECTIONS)
    assert len(set(SPOKEN_LANGUAGE_LABELS[language].values())) == len(SPOKEN_LANGUAGES)


def test_the_labels_read_as_people_write_them() -> None:
    assert protections_text(["life_support", "elderly"]) == "維生器材、高齡"
    assert protections_text(["low_income", "disabled"], "en") == "low income, disabled"
    assert (spoken_language_label("hak"), spoken_language_label("nan", "en")) == (
        "客語", "Taiwanese Hokkien",
    )  # fmt: skip
    assert spoken_language_label(None) == "" and protections_text([]) == ""
