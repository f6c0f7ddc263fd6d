"""Logging set-up shared by the API, the worker and the CLI.

- Format: JSON lines when deployed (``NOTIFIER_MODE=deployed``), one readable
  line of text when embedded; ``NOTIFIER_LOG_FORMAT=json|text`` overrides.
  Each record has ``time`` (ISO 8601, UTC), ``level``, ``logger``,
  ``process``, ``message`` and the fields passed as ``extra={...}``
  (``delivery_id``, ``channel``, ``status``, ``provider_id`` ...).
- Masking, as a safety net: :class:`MaskingFilter` masks phone numbers (E.164
  and Taiwanese national formats), email addresses, API keys (``ntf_***``),
  passwords in URLs and the value of every secret setting, in the message,
  the extras and tracebacks. Names and postal addresses cannot be recognised
  by a pattern: log calls pass ids, never them (extras named ``address``,
  ``customer_name``, ``phone`` or ``account_no`` are masked by their name).
- The Celery worker and beat log through the same handler: importing this
  module answers Celery's ``setup_logging`` signal, so Celery leaves the root
  logger to us (``worker_hijack_root_logger`` is off as well).
- HTTP: uvicorn's access log is switched off (it prints query strings, which
  may carry tokens); :class:`AccessLog` writes one line per request with the
  method, the path without its query string, the status and the duration.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers

from notifier.privacy.masking import mask_account_no, mask_address, mask_email, mask_phone
from notifier.settings import Settings, get_settings

__all__ = [
    "AccessLog",
    "JsonFormatter",
    "MaskingFilter",
    "TextFormatter",
    "configure_logging",
    "mask_text",
    "secret_values",
    "wants_json",
]

# Attributes every LogRecord has; anything else on a record came from
# ``extra`` (but uvicorn's ANSI-coloured copy of its message).
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Letters and digits right before or after a number make it part of an id, a
# hash or a timestamp, not a phone number. (ASCII only: a number right after
# Chinese text is still a phone number.)
_E164 = re.compile(r"(?<![0-9A-Za-z_])\+[1-9](?:[ -]?\d){7,14}(?![0-9A-Za-z_])")
# Taiwanese national formats: 0912345678, 0912-345-678, 02-2345-6789,
# (02) 2345 6789, 037-123456: a leading 0 and 9 or 10 digits in all.
_TW_NATIONAL = re.compile(
    r"(?<![0-9A-Za-z_.+/-])(?:\(0\d{1,3}\) ?|0\d{1,3}[ -]?)\d{2,4}[ -]?\d{3,4}(?![0-9A-Za-z_-]|\.\d)"
)
_API_KEY = re.compile(r"\bntf_[A-Za-z0-9_-]{8,}")
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]+):[^@/\s]+@")
# What every pattern below needs to match at all (an "@", "ntf_", "://", a "+" before a
# digit, a national number's leading 0): a text without any is left as it is, at one scan
# instead of five. Most of a worker's lines ("delivery 42: sent", provider ids) have none.
_MAYBE_PERSONAL = re.compile(r"@|ntf_|://|\+[1-9]|(?<![0-9A-Za-z_.+/-])(?:\(0|0\d)")
_MIN_SECRET = 4
"""Shorter "secrets" would mask ordinary words everywhere."""

# Extras that hold personal data by their name, whatever their value looks like.
_PERSONAL_FIELDS: dict[str, Callable[[str], str]] = {
    "account_no": mask_account_no,
    "phone": mask_phone,
    "mobile": mask_phone,
    "email": mask_email,
    "address": mask_address,
    "customer_name": lambda _: "***",
    "recipient_name": lambda _: "***",
    "full_name": lambda _: "***",
}
# Message-IDs look like email addresses by design; they are ids, not people.
_NOT_EMAIL_FIELDS = frozenset({"provider_id", "message_id"})


def _national(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    if len(digits) not in (9, 10):
        return match.group()
    try:
        number = phonenumbers.parse(digits, "TW")
    except phonenumbers.NumberParseException:
        return match.group()
    return mask_phone(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def mask_text(text: str, secrets: re.Pattern[str] | None = None, *, emails: bool = True) -> str:
    """``text`` with secrets, API keys, URL passwords, emails and phone numbers masked."""
    if secrets is not None:
        text = secrets.sub("***", text)
    return _masked(text, emails=emails) if _MAYBE_PERSONAL.search(text) else text


def _masked(text: str, *, emails: bool) -> str:
    text = _API_KEY.sub("ntf_***", text)
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    if emails:
        text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    text = _E164.sub(lambda m: mask_phone("+" + re.sub(r"\D", "", m.group())), text)
    return _TW_NATIONAL.sub(_national, text)


def secret_values(settings: Settings | None) -> list[str]:
    """The values of the secret settings (and the FCM service account's key)."""
    if settings is None:
        return []
    values = [
        settings.twilio.auth_token.get_secret_value(),
        settings.smtp.password.get_secret_value(),
        settings.fcm.access_token.get_secret_value(),
        settings.pay_link_key.get_secret_value(),
        settings.callback_key.get_secret_value(),
        settings.metrics_token.get_secret_value(),
    ]
    credentials = settings.fcm.credentials_file
    if credentials is not None:
        try:
            account = json.loads(Path(credentials).read_text())
            values += [str(account.get("private_key", "")), str(account.get("private_key_id", ""))]
        except (OSError, ValueError, AttributeError):
            pass  # the FCM adapter reports an unreadable file; logging must not
    return [value for value in values if len(value) >= _MIN_SECRET]


class MaskingFilter(logging.Filter):
    """Masks personal data and secrets in a record's message, extras and traceback."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        ordered = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self.secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: log what there is rather than lose the record
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = mask_text(message, self.secrets), None
        for key in set(vars(record)) - _RECORD_FIELDS:
            setattr(record, key, self._value(key, getattr(record, key)))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, self.secrets)
        return True

    def _value(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            personal = _PERSONAL_FIELDS.get(key)
            if personal is not None:
                return personal(value)
            return mask_text(value, self.secrets, emails=key not in _NOT_EMAIL_FIELDS)
        if isinstance(value, dict):
            return {k: self._value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(key, v) for v in value]
        if isinstance(value, bool | int | float) or value is None:
            return value
        return self._value(key, str(value))


def _time(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2026-11-27T01:00:00.123Z INFO logger [pid] message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name} [{record.process}] "
        line += record.getMessage()
        if record.name != AccessLog.logger:  # its message already says it all
            for key, value in _extras(record).items():
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                if not text or any(c in text for c in ' ="'):
                    text = json.dumps(text, ensure_ascii=False)
                line += f" {key}={text}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


def wants_json(settings: Settings | None) -> bool:
    """JSON lines when deployed or asked for; text otherwise."""
    chosen: str
    mode: str
    if settings is not None:
        chosen, mode = settings.log_format, settings.mode
    else:  # settings that do not load: read the two variables themselves
        chosen = os.environ.get("NOTIFIER_LOG_FORMAT", "").strip().lower()
        mode = os.environ.get("NOTIFIER_MODE", "embedded").strip().lower()
    if chosen in ("json", "text"):
        return chosen == "json"
    return mode == "deployed"


def configure_logging(level: str | int | None = None, *, settings: Settings | None = None) -> None:
    """Root logging to stderr, once per process; ``NOTIFIER_LOG_LEVEL`` sets the level."""
    root = logging.getLogger()
    if getattr(root, "_notifier_configured", False):
        return
    if settings is None:
        try:
            settings = get_settings()
        except Exception:  # the process reports invalid settings itself; log anyway
            settings = None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if wants_json(settings) else TextFormatter())
    handler.addFilter(MaskingFilter(secret_values(settings)))
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("NOTIFIER_LOG_LEVEL") or "INFO")
    # uvicorn's access lines carry query strings (tokens, account numbers):
    # AccessLog writes ours instead.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    # httpx logs every request's full URL at INFO: producers' callback URLs
    # and the providers' endpoints are not ours to print.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    root._notifier_configured = True  # type: ignore[attr-defined]


def _celery_setup_logging(loglevel: str | int | None = None, **_: Any) -> None:
    # NOTIFIER_LOG_LEVEL wins over `notifier worker`'s fixed --loglevel INFO.
    configure_logging(os.environ.get("NOTIFIER_LOG_LEVEL") or loglevel or None)


try:
    from celery.signals import setup_logging as _celery_logging
except ImportError:  # pragma: no cover - celery is a dependency
    pass
else:
    # A receiver for this signal makes Celery (worker and beat) leave logging to us.
    _celery_logging.connect(_celery_setup_logging, weak=False)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AccessLog:
    """ASGI middleware: one log line per HTTP request, without the query string.

    Probes and scrapes (``quiet``) that succeed are logged at DEBUG. An
    account number in the path (``/v1/accounts/{account_no}``) is masked, and
    so is a callback URL's token.
    """

    logger = "notifier.access"

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        quiet: Iterable[str] = ("/healthz", "/readyz", "/metrics"),
    ) -> None:
        self.app = app
        self.quiet = frozenset(quiet)
        self.log = logging.getLogger(self.logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._line(scope, status, (time.perf_counter() - started) * 1000)

    def _line(self, scope: Scope, status: int, ms: float) -> None:
        path = str(scope.get("path", ""))
        params = scope.get("path_params") or {}
        account_no = params.get("account_no")
        if isinstance(account_no, str) and account_no:
            path = path.replace(account_no, mask_account_no(account_no))
        token = params.get("token")  # a callback URL's token (deliveries/callback_tokens.py)
        if isinstance(token, str) and token:
            path = path.replace(token, "***")
        route = getattr(scope.get("route"), "path", None)
        level = logging.DEBUG if path in self.quiet and status < 400 else logging.INFO
        method = str(scope.get("method", ""))
        self.log.log(
            level,
            "%s %s %d %.1fms",
            method,
            path,
            status,
            ms,
            extra={
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(ms, 1),
            },
        )
