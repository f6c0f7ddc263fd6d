"""The configuration reference (docs/configuration.md) is the Settings model's: every field,
nested ones too, with its variable, type, default and a description; never stale, and no
secret's default value printed."""

from __future__ import annotations

from pydantic import BaseModel

from notifier import settings
from notifier.settings import PROJECT_ROOT, Settings
from scripts import config_reference

PAGE = PROJECT_ROOT / "docs" / "configuration.md"


def _variables(model: type[BaseModel] = Settings, prefix: str = "NOTIFIER_") -> set[str]:
    found: set[str] = set()
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found |= _variables(field.annotation, f"{prefix}{name.upper()}__")
        else:
            found.add(f"{prefix}{name.upper()}")
    return found


def test_the_committed_page_is_the_one_the_settings_make() -> None:
    assert PAGE.read_text(encoding="utf-8") == config_reference.render(), (
        "docs/configuration.md is stale: run .venv/bin/python scripts/config_reference.py"
    )


def test_every_setting_has_a_row_with_a_description() -> None:
    rows = {row[0].strip("`"): row for row in config_reference.rows()}
    assert set(rows) == _variables()
    assert {"NOTIFIER_SMTP__HOST", "NOTIFIER_OIDC__ROLE_MAP", "NOTIFIER_MODE"} <= set(rows)
    undocumented = sorted(name for name, row in rows.items() if not row[3])
    assert undocumented == [], "give these fields a docstring in notifier/settings.py"
    assert rows["NOTIFIER_SMTP__PORT"][1:3] == ("`int`", "`587`")


def test_no_secrets_default_is_printed() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert settings._EMBEDDED_PAY_LINK_KEY not in page
    assert "| `NOTIFIER_PAY_LINK_KEY` | `SecretStr` | a placeholder (embedded only) |" in page


def test_the_check_mode_answers_0_for_the_committed_page() -> None:
    assert config_reference.main(["--check"]) == 0
