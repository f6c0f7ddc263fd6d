"""One Settings object: defaults here, ``NOTIFIER_*`` environment overrides.

Nested models use ``__``: ``NOTIFIER_TWILIO__AUTH_TOKEN=...``. Secrets may
also come from files (Docker and Kubernetes secrets): a file named after the
variable, in lower or upper case (``notifier_twilio__auth_token``), in
``NOTIFIER_SECRETS_DIR`` (default ``/run/secrets`` when it exists). An
environment variable wins over a file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Literal

import phonenumbers
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "PROJECT_ROOT",
    "ApiRate",
    "BounceSettings",
    "IdentitySettings",
    "IngestSettings",
    "MitakeSettings",
    "Settings",
    "Voice",
    "VoiceSettings",
    "get_settings",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDER = "change-me"
_EMBEDDED_PAY_LINK_KEY = "embedded-pay-link-key"
_DEFAULT_SECRETS_DIR = Path("/run/secrets")


class TwilioSettings(BaseModel):
    """SMS and voice; on when ``account_sid`` and ``auth_token`` are set."""

    account_sid: str = ""
    """The account SID (``AC…``)."""
    auth_token: SecretStr = SecretStr("")
    """The account's auth token: it authenticates each request and signs Twilio's callbacks."""
    from_number: str = ""
    """The E.164 number SMS and calls come from (unless ``messaging_service_sid`` is set, for SMS)."""
    messaging_service_sid: str = ""
    """A Messaging Service (``MG…``) that picks the sender of each SMS; empty: ``from_number``."""
    base_url: str = "https://api.twilio.com"
    """Twilio's API; a simulator's address in tests and the embedded mode."""
    webhook_shared_key: SecretStr = SecretStr("")
    """The secret of a Twilio Webhooks SharedKey: callbacks whose
    X-Twilio-Webhooks-Signature-Settings name a key are signed with it (HMAC-SHA1 or
    HMAC-SHA256, as the header says) instead of the auth token."""
    timeout: float = 10.0
    """Seconds a request may take; past it the send is held ``ambiguous`` and looked up."""


class MitakeSettings(BaseModel):
    """SMS through Mitake (三竹資訊), chosen with ``NOTIFIER_PROVIDERS__SMS=mitake``."""

    username: str = ""
    """The Mitake account."""
    password: SecretStr = SecretStr("")
    """The Mitake account's password."""
    base_url: str = "https://smsapi.mitake.com.tw"
    """Mitake's API; a simulator's address in tests."""
    timeout: float = Field(10.0, gt=0)
    """Seconds a request may take."""
    callback: bool = True
    """Ask Mitake for delivery reports (``response``, to /v1/callbacks/mitake/status/...);
    off: no report comes, and a sent SMS becomes ``unknown`` after the receipt timeout."""
    max_length: int = Field(333, ge=1)
    """Longest body sent, in characters: the account's long-SMS limit (70 for an account
    without long-SMS rights, which Mitake would otherwise cut short without a word)."""
    client_id_prefix: str = Field("ntf-", max_length=12)
    """Starts every ``clientid`` (Mitake's dedup key, which it wants unique for good): give
    each database that sends through one Mitake account its own."""


class Voice(BaseModel):
    """The text-to-speech voice of one notice language: Twilio's ``<Say voice= language=>``."""

    voice: str
    language: str


class VoiceSettings(BaseModel):
    """Calls: the voice per notice language, and answering-machine detection."""

    voices: dict[str, Voice] = {
        # Twilio's default voice speaks no zh-TW; Google's cmn-TW voices do.
        "zh-TW": Voice(voice="Google.cmn-TW-Standard-A", language="cmn-TW"),
        "en": Voice(voice="Polly.Joanna-Neural", language="en-US"),
    }
    """Per notice language, the ``voice`` and ``language`` of Twilio's ``<Say>``, as JSON; a language not listed takes the first one."""
    machine_detection: Literal["DetectMessageEnd", "Enable", ""] = "DetectMessageEnd"
    """``DetectMessageEnd``: a machine is told once its greeting ended (after the beep);
    ``Enable``: as soon as it is recognised; empty: no detection (no call is then served)."""


class SmtpSettings(BaseModel):
    """Email; on when ``host`` is set."""

    host: str = ""
    """The SMTP server; empty: email goes to the recording sandbox."""
    port: int = 587
    """Its port (587 for STARTTLS, 465 for TLS)."""
    username: str = ""
    """Login name; empty: no AUTH."""
    password: SecretStr = SecretStr("")
    """Login password."""
    starttls: bool = True
    """Upgrade the connection with STARTTLS."""
    use_tls: bool = False
    """TLS from the first byte (port 465) instead of STARTTLS."""
    from_address: str = "notices@utility.example"
    """The From address of every notice."""
    from_name: str = ""
    """The display name beside the From address."""
    reply_to: str = ""
    """A Reply-To address; empty: none."""
    timeout: float = 10.0
    """Seconds one SMTP exchange may take."""
    connections: int = Field(default=16, ge=1, le=100)
    """Connections each worker thread keeps open (SMTP sends one message at a time on each:
    at 50 ms a message, 16 carry 320 emails/s; Postfix allows 50 per client by default)."""
    ehlo_name: str = ""
    """The name we greet the server with (EHLO); empty: this machine's FQDN, as aiosmtplib
    finds it (in a container, a random id: set the sending host's public name)."""


class BounceSettings(BaseModel):
    """Email bounces: the VERP envelope sender of each email and the receiver of its DSNs."""

    domain: str = ""
    """The domain bounces come back to (``bounces+<token>@domain``), whose MX points at
    ``notifier bounces``; empty: no VERP, bounces go to the From address unread."""
    local_part: str = "bounces"
    """The envelope sender is ``<local_part>+<token>@<domain>`` (VERP)."""
    host: str = "127.0.0.1"
    """Where ``notifier bounces`` listens (``0.0.0.0`` in a container)."""
    port: int = Field(2525, ge=0, le=65535)
    """The port ``notifier bounces`` listens on (the MX forwards port 25 here)."""
    window_days: float = Field(30, gt=0)
    """A bounce naming an email sent longer ago than this is dropped (a remote MTA gives up
    after about 5 days; a complaint may come weeks later)."""
    max_bytes: int = Field(10 * 1024 * 1024, ge=64 * 1024)
    """Largest report accepted (552 beyond); a DSN returns the whole message at most."""


class FcmSettings(BaseModel):
    """Push; on when ``project_id`` and a credential (file or static token) are set."""

    project_id: str = ""
    """The Firebase project that owns the app."""
    credentials_file: Path | None = None
    """A service account's JSON key file."""
    access_token: SecretStr = SecretStr("")
    """A static bearer token: for simulators and tests, not for Google."""
    base_url: str = "https://fcm.googleapis.com"
    """FCM's API; a simulator's address in tests and the embedded mode."""
    timeout: float = 10.0
    """Seconds a send may take; past it the push is held ``ambiguous``."""
    sdk_retries: bool = False
    """firebase-admin's own retries (5xx, and a re-sent POST after a read timeout):
    off, so that a push that may have reached FCM is never sent again blindly."""


class IngestSettings(BaseModel):
    """The message bus way in (``notifier ingest``): where producers publish events."""

    broker_url: str = ""
    """Empty: the service's broker (``NOTIFIER_BROKER_URL``)."""
    exchange: str = "notifier.events"
    """Direct, durable: the one entity a producer account may write to."""
    routing_key: str = "event"
    """The routing key producers publish with."""
    queue: str = "notifier.events.ingest"
    """The durable queue the consumer reads."""
    dlq: str = "notifier.events.dead"
    """The dead-letter queue (and its direct exchange, of the same name)."""
    batch_size: int = Field(500, ge=1, le=5000)
    """Messages fetched (prefetched) and stored in one transaction."""
    batch_wait_seconds: float = Field(0.5, gt=0)
    """The longest the first message of a batch waits for others to fill it."""
    visibility_timeout: float = Field(300, gt=0)
    """Redis only: a message fetched and not acknowledged this long goes back to the queue."""
    producer_key_id: int | None = None
    """The API key the bus's events are stored under (its GET /v1/events and callbacks)."""


_PERSON_ROLES = ("ops", "agent", "supervisor", "admin")


class OidcSettings(BaseModel):
    """Staff sign-in through the utility's directory (OpenID Connect); off while ``issuer`` is empty."""

    issuer: str = ""
    """The directory's issuer URL; its ``/.well-known/openid-configuration`` tells the rest."""
    client_id: str = ""
    """This service's client at the directory (confidential, code flow with PKCE)."""
    client_secret: SecretStr = SecretStr("")
    """That client's secret."""
    name: str = "directory"
    """What the sign-in page's button calls the directory ("Sign in with <name>")."""
    scopes: list[str] = ["openid", "profile"]
    """Asked for at sign-in; add the one that releases ``roles_claim`` (often ``groups``)."""
    roles_claim: str = "groups"
    """The claim (a string or a list of strings) whose values ``role_map`` maps to roles."""
    role_map: dict[str, str] = {}
    """Claim value → ``ops``, ``agent``, ``supervisor`` or ``admin``; the highest one wins."""
    only: bool = False
    """Refuse password sign-in (local accounts) altogether: the directory is the only way in."""
    timeout_seconds: float = Field(10, gt=0)
    """Each call to the directory (discovery, token, JWKS, userinfo)."""

    @field_validator("role_map")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for claim, role in value.items():
            if role not in _PERSON_ROLES:
                raise ValueError(
                    f"role_map[{claim!r}]: {role!r} is not one of {', '.join(_PERSON_ROLES)}"
                )
        return value

    @model_validator(mode="after")
    def _complete(self) -> OidcSettings:
        if self.issuer and not self.client_id:
            raise ValueError("oidc.client_id: needed when oidc.issuer is set")
        if self.issuer and "openid" not in self.scopes:
            raise ValueError("oidc.scopes: must include 'openid'")
        if self.only and not self.issuer:
            raise ValueError("oidc.only: needs oidc.issuer (nobody could sign in)")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


_POSTAL_CODE = re.compile(r"\d{3}(?:\d{2}|\d{3})?")
_LOGO_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")


class IdentitySettings(BaseModel):
    """Who the notices come from: one place for the name every email, card, page and call says.

    An email from a bare address with no footer reads like phishing; every
    notice names the utility, its service line and website, and says how to
    tell a genuine message (templates/_layout/). The defaults are the embedded
    demo's made-up utility: a deployment sets its own.
    """

    name: str = Field("示範電力公司", min_length=1, max_length=40)
    """The utility's name as zh-TW notices and the pages' header write it."""
    name_en: str = Field("Demo Power Company", min_length=1, max_length=60)
    """The name English notices say."""
    sender_name: str = Field("示範電力公司 客服中心", min_length=1, max_length=60)
    """The sender printed on postcards and notices, and the From name of emails."""
    sender_address: str = "notices@utility.example"
    """The From address of emails (``NOTIFIER_SMTP__FROM_ADDRESS`` overrides it)."""
    postal_code: str = "351"
    """The return address's postal code (3, 5 or 6 digits, 郵遞區號), printed before it."""
    return_address: str = Field("苗栗縣頭份市中正路100號", min_length=1, max_length=80)
    """Where undeliverable cards come back to (without the postal code)."""
    service_phone: str = Field("1911", min_length=1, max_length=20)
    """The service line every notice prints and every call reads out (a short code is fine)."""
    website: str = "https://www.utility.example"
    """The utility's own site, named in every notice as the way to check a message (https)."""
    logo_file: Path | None = None
    """A PNG, JPEG or SVG logo printed top left on postcards and notices; none: the name alone."""
    logo_url: str = ""
    """An https image URL shown at the top of HTML emails; empty: the name alone (no image
    that a mail client blocks, and nothing fetched that tracks the reader)."""

    @field_validator("postal_code")
    @classmethod
    def _postal_code(cls, value: str) -> str:
        if not _POSTAL_CODE.fullmatch(value):
            raise ValueError(
                f"NOTIFIER_IDENTITY__POSTAL_CODE must be 3, 5 or 6 digits (郵遞區號), not {value!r}"
            )
        return value

    @field_validator("website", "logo_url")
    @classmethod
    def _https(cls, value: str, info: ValidationInfo) -> str:
        if value and not re.fullmatch(r"https://[A-Za-z0-9.-]+(?::\d+)?(?:/\S*)?", value):
            field = f"NOTIFIER_IDENTITY__{(info.field_name or '').upper()}"
            raise ValueError(f"{field} must be an https:// address, not {value!r}")
        if info.field_name == "website" and not value:
            raise ValueError(
                "NOTIFIER_IDENTITY__WEBSITE: every notice names it; it cannot be empty"
            )
        return value

    @field_validator("sender_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", value):
            raise ValueError(
                f"NOTIFIER_IDENTITY__SENDER_ADDRESS must be an email address, not {value!r}"
            )
        return value

    @field_validator("logo_file")
    @classmethod
    def _logo(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if value.suffix.lower() not in _LOGO_SUFFIXES:
            raise ValueError(
                f"NOTIFIER_IDENTITY__LOGO_FILE must be a {', '.join(_LOGO_SUFFIXES)} file, "
                f"not {value.name!r}"
            )
        if not value.is_file():
            raise ValueError(f"NOTIFIER_IDENTITY__LOGO_FILE: no file at {value}")
        return value

    @property
    def website_host(self) -> str:
        """The website as people type it: ``www.utility.example``."""
        return self.website.removeprefix("https://").rstrip("/")

    def name_in(self, language: str) -> str:
        """The name a notice in ``language`` says."""
        return self.name if language.lower().startswith("zh") else self.name_en

    def context(self) -> dict[str, str]:
        """What templates see as ``utility`` (notifier.notices.rendering)."""
        return {
            "name": self.name,
            "name_en": self.name_en,
            "sender_name": self.sender_name,
            "phone": self.service_phone,
            "website": self.website,
            "website_host": self.website_host,
            "logo_url": self.logo_url,
        }


class ApiRate(BaseModel):
    """Requests per second one API key may make, and how many at once after a pause."""

    per_second: float = Field(gt=0)
    """Requests per second, sustained."""
    burst: int = Field(ge=1)
    """Requests at once after a pause."""


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_", env_nested_delimiter="__", extra="ignore"
    )

    mode: Literal["embedded", "deployed"] = "embedded"
    """``embedded`` (one machine, nothing installed) or ``deployed``, which refuses placeholder secrets."""
    data_dir: Path = Path("var")
    """The SQLite database, the filesystem broker, beat's schedule, print batches, sandbox output."""
    database_url: str = ""
    """Empty: SQLite in the data dir."""
    broker_url: str = ""
    """Empty: kombu's filesystem transport in the data dir."""
    policy_file: Path = PROJECT_ROOT / "config" / "policy.yaml"
    """The routing policy (channels, fallbacks, quiet hours, escalation)."""
    templates_dir: Path = PROJECT_ROOT / "templates"
    """Notice templates, ``<event>/<channel>.<lang>.j2``."""
    quiet_hours: str = ""
    """``HH:MM-HH:MM`` in the business time zone, ``off``, or empty for the policy's."""
    timezone: str = "Asia/Taipei"
    """The scheduler's time zone (quiet hours use the policy's ``timezone``)."""
    areas_file: Path = PROJECT_ROOT / "config" / "areas.yaml"
    """Service areas' display names per language (pages, exports); a missing file: codes."""
    lookup_key: SecretStr = SecretStr("")
    """Keys the hashes of phone numbers and emails the delivery log searches by (HMAC of
    the normalised value), so no plain personal data is indexed; empty: derived from
    ``pay_link_key``. A new key leaves the stored hashes matching nothing until
    ``alembic`` migration 0023's backfill (``privacy.lookup``) is run again."""
    minguo_dates: bool = True
    """Write zh-TW dates in the Minguo calendar (115年 for 2026)."""

    service_phone: str = "1911"
    """The service line printed and read out in notices: ``identity.service_phone``, kept
    under its first name too (``NOTIFIER_SERVICE_PHONE`` still sets it)."""
    service_dial_number: str = ""
    """E.164 number the voice menu's "press 2" connects to (Twilio dials E.164 only,
    never a short code such as 1911); empty: the menu offers no transfer."""
    pay_url: str = "https://pay.utility.example/bill"
    """Base of each notice's payment link; the bill's signed reference is appended."""
    pay_link_key: SecretStr = SecretStr(_EMBEDDED_PAY_LINK_KEY)
    """Signs the opaque bill reference in pay links; share it with the pay site."""
    public_url: str = "http://127.0.0.1:8000"
    """The address Twilio calls back, with any path prefix the proxy in front strips."""
    trust_forwarded_headers: bool = False
    """Whether X-Forwarded-Proto/Host (of our own proxy) name the public scheme and host of
    callback URLs; off: ``public_url`` does, whatever a request claims."""
    callback_key: SecretStr = SecretStr("")
    """Signs the tokens in the callback URLs given to Twilio; empty: derived (embedded only)."""
    callback_window_hours: float = Field(72, gt=0)
    """A Twilio callback whose URL token was issued longer ago than this is refused."""

    lease_seconds: float = Field(120, gt=0)
    """How long a worker owns a delivery it claimed before others may take it."""
    redispatch_after_seconds: float = Field(60, gt=0)
    """A queued row untouched this long is assumed lost by the broker and sent again."""
    reconcile_interval_seconds: float = Field(15, gt=0)
    """How often beat runs the reconciler."""
    ambiguous_wait_seconds: float = Field(60, gt=0)
    """A send that may have reached its provider (a timeout after the request left) is
    ``ambiguous``: looked up at the provider (Twilio), and sent again only if, this long
    after, the provider has no record of it; a provider that cannot be asked (FCM) is
    sent again once, after this long (notifier.flows.ambiguous)."""
    receipt_timeout_seconds: float = Field(4 * 3600, gt=0)
    """A ``sent`` SMS or call whose provider has not reported on it for this long
    becomes ``unknown`` (and a dunning notice starts its fallback). Twilio
    reports within minutes when it reports at all; hours leave room for a slow
    carrier without leaving a notice unproven for a day."""
    filesystem_polling_interval: float = 0.05
    """Seconds between polls of the filesystem broker (embedded mode)."""
    publish_timeout_seconds: float = 2.0
    """Broker connection timeout when publishing: with the broker down, the API waits no longer."""
    metrics_token: SecretStr = SecretStr("")
    """Bearer token a Prometheus scraper sends to ``GET /metrics``; empty: /metrics is open."""
    metrics_cache_seconds: float = Field(10, ge=0)
    """How long one reading of /metrics is served to every scraper."""
    log_format: Literal["", "json", "text"] = ""
    """``json`` or ``text``; empty: JSON lines when deployed, one-line text when embedded."""

    webhook_timeout_seconds: float = Field(10, gt=0)
    """How long a producer's callback URL has to answer one POST."""
    callback_allow_private: bool = False
    """Let producer callbacks go to loopback and private addresses (local demos and tests
    only): off, a callback URL must resolve to public addresses only, in every mode."""
    webhook_max_attempts: int = Field(12, ge=1)
    """POSTs of one producer callback (on 5xx, 408, 429, timeouts) before it is failed."""
    webhook_retry_base_seconds: float = Field(10, gt=0)
    """Backoff base between a producer callback's POSTs: a random ½ to 1 × base × 2^(attempt−1)."""
    webhook_retry_max_seconds: float = Field(3600, gt=0)
    """Backoff between POSTs: base × 2^(attempt−1), capped at max, jittered to ½–1×."""

    providers: dict[str, str] = {}
    """The providers of a channel, in order (``NOTIFIER_PROVIDERS__SMS=mitake,twilio``), with
    optional weights (``mitake:3,twilio:1``); otherwise credentials decide. See
    notifier/providers/selection.py."""
    circuit_open_seconds: float = Field(300, gt=0)
    """How long a provider's circuit stays open (its sends held) before one probe send."""
    receipt_stall_seconds: float = Field(900, gt=0)
    """A reporting provider's send still without a report after this long is overdue."""
    receipt_stall_count: int = Field(20, ge=1)
    """With this many overdue sends a provider's receipts stall: traffic moves to the
    channel's next provider until they drop below (reported, or ``unknown``)."""
    push_ttl_hours: float = Field(72, gt=0, le=28 * 24)
    """The longest a push waits for an offline device (FCM keeps one 4 weeks at most);
    a notice about a bill expires sooner, at the end of its due date (flows/push_terms.py)."""
    rate_limits: dict[str, float] = {
        "twilio": 30.0,
        "mitake": 20.0,
        "smtp": 50.0,
        "fcm": 500.0,
    }
    """Messages (or calls) per second per provider, across all workers."""
    rate_limit_url: str = ""
    """Redis URL for the shared rate limiter; empty: the broker if it is Redis, else the database."""
    postcard_cutoff: str = "16:00"
    """Business-day time (in ``timezone``) at which the day's postcards go to print."""
    postcard_sealed: Literal["dunning", "all", "none"] = "dunning"
    """Which cards print as sealed mailers (the outside shows no amount; the inside the
    notice and its payment QR code): ``dunning`` (cards stating an amount owed), ``all``,
    or ``none`` (open cards, and so no payment code)."""
    retention_days: int = 90
    """Days the personal data of finished deliveries, events and closed cases is kept."""

    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    """Largest request body accepted (413 beyond); a 1,000-event batch is 0.5-1.1 MB."""
    api_rate_limits: dict[
        Literal["producer", "ops", "agent", "supervisor", "admin", "default"], ApiRate
    ] = {
        "producer": ApiRate(per_second=200, burst=400),
        "default": ApiRate(per_second=20, burst=40),
    }
    """Requests per API key, by the key's role (``default``: roles not listed); ``{}``: none."""

    session_hours: float = Field(8, gt=0)
    """A web sign-in ends after this long without a request."""
    session_max_hours: float = Field(12, gt=0)
    """A web sign-in ends this long after it began, however busy."""
    login_max_failures: int = Field(5, ge=1)
    """Wrong passwords in a row that lock a user's account."""
    login_lockout_minutes: float = Field(15, gt=0)
    """How long a locked account refuses every sign-in."""
    login_throttle_failures: int = Field(20, ge=1)
    """Failed sign-ins from one client address that make it wait (429) ..."""
    login_throttle_minutes: float = Field(10, gt=0)
    """... until this long after its first failure of the window."""
    oidc: OidcSettings = OidcSettings()
    identity: IdentitySettings = IdentitySettings()

    twilio: TwilioSettings = TwilioSettings()
    mitake: MitakeSettings = MitakeSettings()
    voice: VoiceSettings = VoiceSettings()
    smtp: SmtpSettings = SmtpSettings()
    bounces: BounceSettings = BounceSettings()
    fcm: FcmSettings = FcmSettings()
    ingest: IngestSettings = IngestSettings()

    @field_validator("providers")
    @classmethod
    def _provider_lists(cls, value: dict[str, str]) -> dict[str, str]:
        for channel, chain in value.items():
            parse_provider_chain(chain, field=f"NOTIFIER_PROVIDERS__{channel.upper()}")
        return value

    @field_validator("retention_days")
    @classmethod
    def _retention_at_least_a_day(cls, value: int) -> int:
        if value < 1:
            raise ValueError(
                f"NOTIFIER_RETENTION_DAYS must be 1 or more (days personal data is kept), not {value}"
            )
        return value

    @field_validator("service_dial_number")
    @classmethod
    def _dial_number_is_e164(cls, value: str) -> str:
        if not value:
            return value
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            number = None
        if (
            number is None
            or not phonenumbers.is_valid_number(number)
            or phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != value
        ):
            raise ValueError(
                "NOTIFIER_SERVICE_DIAL_NUMBER must be a valid E.164 number such as "
                f"+886223456789 (Twilio dials nothing else), not {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _one_identity(self) -> Settings:
        # One service phone, two names for it: NOTIFIER_SERVICE_PHONE came first.
        top, nested = self.service_phone, self.identity.service_phone
        top_set = "service_phone" in self.model_fields_set
        nested_set = "service_phone" in self.identity.model_fields_set
        if top_set and nested_set and top != nested:
            raise ValueError(
                f"NOTIFIER_SERVICE_PHONE ({top!r}) and NOTIFIER_IDENTITY__SERVICE_PHONE "
                f"({nested!r}) disagree: set one of them"
            )
        phone = top if top_set else nested
        self.service_phone = phone
        self.identity.service_phone = phone
        # The From of emails is the identity's unless the SMTP settings name another.
        if not self.smtp.from_name:
            self.smtp.from_name = self.identity.sender_name
        if "from_address" not in self.smtp.model_fields_set:
            self.smtp.from_address = self.identity.sender_address
        return self

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.mode != "embedded":
            if self.pay_link_key.get_secret_value() == _EMBEDDED_PAY_LINK_KEY:
                raise ValueError("NOTIFIER_PAY_LINK_KEY must be set outside the embedded mode")
            for name, value in _secrets(self, "NOTIFIER_"):
                if value.get_secret_value() == _PLACEHOLDER:
                    raise ValueError(f"{name} is still the placeholder {_PLACEHOLDER!r}")
            # Only Twilio calls back; without it the key signs nothing.
            if self.twilio.account_sid and self.callback_key.get_secret_value() in (
                "",
                _PLACEHOLDER,
            ):
                raise ValueError("NOTIFIER_CALLBACK_KEY must be set when deployed with Twilio")
            # Mitake signs nothing: the key behind its URL tokens is all that vouches.
            if (
                self.mitake.username
                and self.mitake.callback
                and self.callback_key.get_secret_value() in ("", _PLACEHOLDER)
            ):
                raise ValueError("NOTIFIER_CALLBACK_KEY must be set when deployed with Mitake")
            # The key also signs the token in each email's bounce address.
            if self.bounces.domain and self.callback_key.get_secret_value() in ("", _PLACEHOLDER):
                raise ValueError(
                    "NOTIFIER_CALLBACK_KEY must be set when deployed with NOTIFIER_BOUNCES__DOMAIN"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files named like the variables, nested ones with "__" too
        # (pydantic-settings' plain secrets source knows top-level names only).
        folder = getattr(file_secret_settings, "secrets_dir", None) or _secrets_dir()
        files = NestedSecretsSettingsSource(
            file_secret_settings, secrets_dir=folder, secrets_dir_missing="error"
        )
        return init_settings, env_settings, dotenv_settings, files

    def api_rate_for(self, role: str) -> ApiRate | None:
        """The request rate of a key of ``role``; None: not limited."""
        limits: dict[str, ApiRate] = {
            str(name): rate for name, rate in self.api_rate_limits.items()
        }
        return limits.get(role) or limits.get("default")

    @property
    def resolved_lookup_key(self) -> bytes:
        """``lookup_key``, else one derived from ``pay_link_key`` (never a key in the code)."""
        own = self.lookup_key.get_secret_value()
        if own:
            return own.encode()
        base = self.pay_link_key.get_secret_value().encode()
        return hmac.new(base, b"notifier contact lookup", hashlib.sha256).digest()

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


def _secrets_dir() -> Path | None:
    """``NOTIFIER_SECRETS_DIR`` (empty: none), else /run/secrets if there is one."""
    named = os.environ.get("NOTIFIER_SECRETS_DIR")
    if named is not None:
        return Path(named) if named else None
    return _DEFAULT_SECRETS_DIR if _DEFAULT_SECRETS_DIR.is_dir() else None


def _secrets(model: BaseModel, prefix: str) -> Iterator[tuple[str, SecretStr]]:
    """Every secret setting of ``model`` and its nested models, with its variable's name."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield f"{prefix}{name.upper()}", value
        elif isinstance(value, BaseModel):
            yield from _secrets(value, f"{prefix}{name.upper()}__")


_PROVIDER_ENTRY = re.compile(r"([a-z][a-z0-9_-]{0,31})(?::(\d{1,4}))?")


def parse_provider_chain(chain: str, *, field: str) -> list[tuple[str, int | None]]:
    """``"mitake:3,twilio"`` → ``[("mitake", 3), ("twilio", None)]``; a clear error naming ``field``."""
    entries: list[tuple[str, int | None]] = []
    for raw in chain.split(","):
        entry = _PROVIDER_ENTRY.fullmatch(raw.strip())
        if entry is None:
            raise ValueError(
                f"{field}: {raw.strip()!r} is not a provider name with an optional weight "
                f"(e.g. mitake,twilio or mitake:3,twilio:1)"
            )
        name, weight = entry.group(1), entry.group(2)
        if name in (seen[0] for seen in entries):
            raise ValueError(f"{field}: provider {name!r} is listed twice")
        entries.append((name, int(weight) if weight is not None else None))
    if all(weight == 0 for _, weight in entries):
        raise ValueError(f"{field}: at least one provider needs a weight above 0")
    return entries


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
