"""Secrets from the environment or from files (Docker and Kubernetes secrets), never placeholders."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError

from notifier.settings import Settings


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    monkeypatch.setenv("NOTIFIER_SECRETS_DIR", str(folder))
    for name in ("NOTIFIER_MODE", "NOTIFIER_PAY_LINK_KEY", "NOTIFIER_TWILIO__AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return folder


def test_secrets_are_read_from_files_named_like_the_variables(secrets_dir: Path) -> None:
    # As `docker secret` or a Kubernetes secret volume leaves them: a trailing newline.
    (secrets_dir / "notifier_twilio__auth_token").write_text("twilio-token-from-file\n")
    (secrets_dir / "NOTIFIER_PAY_LINK_KEY").write_text("pay-link-key-from-file\n")
    (secrets_dir / "unrelated_secret").write_text("not ours")
    settings = Settings()
    assert settings.twilio.auth_token.get_secret_value() == "twilio-token-from-file"
    assert settings.pay_link_key.get_secret_value() == "pay-link-key-from-file"


def test_the_environment_wins_over_a_file(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (secrets_dir / "notifier_twilio__auth_token").write_text("from-file")
    monkeypatch.setenv("NOTIFIER_TWILIO__AUTH_TOKEN", "from-env")
    monkeypatch.setenv("NOTIFIER_TWILIO__ACCOUNT_SID", "AC123")
    settings = Settings()
    assert settings.twilio.auth_token.get_secret_value() == "from-env"
    assert settings.twilio.account_sid == "AC123"


def test_a_named_secrets_dir_that_is_missing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_SECRETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match="does not exist"):
        Settings()


def _secret_variables() -> list[str]:
    """Every SecretStr setting, nested ones too, by its variable's name."""
    names = []
    for name, field in Settings.model_fields.items():
        if field.annotation is SecretStr:
            names.append(f"NOTIFIER_{name.upper()}")
        elif isinstance(field.default, BaseModel):
            names += [
                f"NOTIFIER_{name.upper()}__{sub.upper()}"
                for sub, subfield in type(field.default).model_fields.items()
                if subfield.annotation is SecretStr
            ]
    return names


@pytest.mark.parametrize("variable", _secret_variables())
def test_every_secret_refuses_the_placeholder_when_deployed(
    variable: str, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_MODE", "deployed")
    (secrets_dir / "notifier_pay_link_key").write_text("a-real-key")
    (secrets_dir / variable.lower()).write_text("change-me\n")
    with pytest.raises(ValidationError, match=f"{variable} is still the placeholder"):
        Settings()


def test_the_secrets_are_all_checked() -> None:
    assert set(_secret_variables()) >= {
        "NOTIFIER_PAY_LINK_KEY",
        "NOTIFIER_METRICS_TOKEN",
        "NOTIFIER_TWILIO__AUTH_TOKEN",
        "NOTIFIER_SMTP__PASSWORD",
        "NOTIFIER_FCM__ACCESS_TOKEN",
    }
