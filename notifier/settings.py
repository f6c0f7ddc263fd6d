"""One Settings object: defaults here, ``NOTIFIER_*`` environment overrides.

Nested models use ``__``: ``NOTIFIER_TWILIO__AUTH_TOKEN=...``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PROJECT_ROOT", "Settings", "get_settings"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDER = "change-me"
_EMBEDDED_PAY_LINK_KEY = "embedded-pay-link-key"


class TwilioSettings(BaseModel):
    """SMS and voice; on when ``account_sid`` and ``auth_token`` are set."""

    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    from_number: str = ""
    messaging_service_sid: str = ""
    base_url: str = "https://api.twilio.com"
    timeout: float = 10.0


class SmtpSettings(BaseModel):
    """Email; on when ``host`` is set."""

    host: str = ""
    port: int = 587
    username: str = ""
    password: SecretStr = SecretStr("")
    starttls: bool = True
    use_tls: bool = False
    from_address: str = "notices@utility.example"
    from_name: str = ""
    reply_to: str = ""
    timeout: float = 10.0


class FcmSettings(BaseModel):
    """Push; on when ``project_id`` and a credential (file or static token) are set."""

    project_id: str = ""
    credentials_file: Path | None = None
    access_token: SecretStr = SecretStr("")
    """A static bearer token: for simulators and tests, not for Google."""
    base_url: str = "https://fcm.googleapis.com"
    timeout: float = 10.0
    sdk_retries: bool = True


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_", env_nested_delimiter="__", extra="ignore"
    )

    mode: Literal["embedded", "deployed"] = "embedded"
    data_dir: Path = Path("var")
    database_url: str = ""
    """Empty: SQLite in the data dir."""
    broker_url: str = ""
    """Empty: kombu's filesystem transport in the data dir."""
    policy_file: Path = PROJECT_ROOT / "config" / "policy.yaml"
    templates_dir: Path = PROJECT_ROOT / "templates"
    quiet_hours: str = ""
    """``HH:MM-HH:MM`` in the business time zone, ``off``, or empty for the policy's."""
    timezone: str = "Asia/Taipei"
    minguo_dates: bool = True

    service_phone: str = "1911"
    pay_url: str = "https://pay.utility.example/bill"
    pay_link_key: SecretStr = SecretStr(_EMBEDDED_PAY_LINK_KEY)
    """Signs the opaque bill reference in pay links; share it with the pay site."""
    public_url: str = "http://127.0.0.1:8000"

    lease_seconds: float = Field(120, gt=0)
    """How long a worker owns a delivery it claimed before others may take it."""
    redispatch_after_seconds: float = Field(60, gt=0)
    """A queued row untouched this long is assumed lost by the broker and sent again."""
    reconcile_interval_seconds: float = Field(15, gt=0)
    filesystem_polling_interval: float = 0.05
    publish_timeout_seconds: float = 2.0
    metrics_token: SecretStr = SecretStr("")
    """Bearer token a Prometheus scraper sends to ``GET /metrics``; empty: /metrics is open."""
    metrics_cache_seconds: float = Field(10, ge=0)
    """How long one reading of /metrics is served to every scraper."""
    log_format: Literal["", "json", "text"] = ""
    """``json`` or ``text``; empty: JSON lines when deployed, one-line text when embedded."""

    providers: dict[str, str] = {}
    """Force a provider per channel (``{"sms": "sandbox"}``); otherwise credentials decide."""
    rate_limits: dict[str, float] = {"twilio": 30.0, "smtp": 50.0, "fcm": 500.0}
    """Messages (or calls) per second per provider, across all workers."""
    rate_limit_url: str = ""
    """Redis URL for the shared rate limiter; empty: the broker if it is Redis, else the database."""
    postcard_cutoff: str = "16:00"
    """Business-day time (in ``timezone``) at which the day's postcards go to print."""

    session_hours: float = Field(8, gt=0)
    """A web sign-in ends after this long without a request."""
    login_max_failures: int = Field(5, ge=1)
    """Wrong passwords in a row that lock a user's account."""
    login_lockout_minutes: float = Field(15, gt=0)
    """How long a locked account refuses every sign-in."""

    twilio: TwilioSettings = TwilioSettings()
    smtp: SmtpSettings = SmtpSettings()
    fcm: FcmSettings = FcmSettings()

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.mode != "embedded":
            if self.pay_link_key.get_secret_value() == _EMBEDDED_PAY_LINK_KEY:
                raise ValueError("NOTIFIER_PAY_LINK_KEY must be set outside the embedded mode")
            secrets = {
                "NOTIFIER_TWILIO__AUTH_TOKEN": self.twilio.auth_token,
                "NOTIFIER_SMTP__PASSWORD": self.smtp.password,
            }
            for name, value in secrets.items():
                if value.get_secret_value() == _PLACEHOLDER:
                    raise ValueError(f"{name} is still the placeholder {_PLACEHOLDER!r}")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'notifier.db').resolve()}"

    @property
    def broker_dir(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def sandbox_dir(self) -> Path:
        return (self.data_dir / "sandbox").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
