"""The service's codes as words in the page's language: statuses, channels, event types,
reasons, areas, queues, audit actions and timeline details.

The database, the API and the logs keep the codes (``bill.unpaid``, ``toufen``,
``pii.view``); pages show words. Each group below maps a code to its English
word, which the page's catalog (``locales/<lang>/labels.json``) translates like
any other page text. An area's name is not the service's vocabulary but the
utility's: it comes from config (``NOTIFIER_AREAS_FILE``, ``config/areas.yaml``).
A code no group knows is shown as it is, never dropped: a new status stays visible.

Templates use the filters :func:`install` adds: ``{{ d.status|word("status") }}``,
``{{ d.area|area }}``, ``{% for name, text, link in change.detail|details(tz) %}``.
It may import settings and the privacy masking, nothing of the pages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from notifier.api.deliveries import shown_text
from notifier.policy import local_time
from notifier.settings import get_settings
from notifier.web.i18n import LANGUAGE_NAMES, Translations

__all__ = ["GROUPS", "area_name", "area_names", "details", "install", "word"]

GROUPS: dict[str, dict[str, str]] = {
    "status": {
        "queued": "queued", "sending": "sending", "deferred": "deferred", "sent": "sent",
        "delivered": "delivered", "failed": "failed", "undelivered": "undelivered",
        "cancelled": "cancelled", "suppressed": "suppressed", "ambiguous": "ambiguous",
        "unknown": "unknown", "report": "provider report", "planned": "planned",
        "active": "active", "unreachable": "unreachable", "open": "open", "done": "done",
        "running": "running",
    },
    "channel": {
        "push": "push", "sms": "sms", "email": "email", "voice": "voice",
        "postcard": "postcard", "notice": "printed notice",
    },
    "provider": {
        "sandbox": "sandbox (no real send)", "print": "print shop", "smtp": "mail server",
        "twilio": "Twilio", "mitake": "Mitake", "fcm": "Firebase",
    },
    "trigger": {"beat": "daily schedule", "cli": "command line"},
    "role": {
        "ops": "Operations", "agent": "Agent", "supervisor": "Supervisor",
        "admin": "Administrator", "producer": "producer system",
    },
    "word": {
        "none left": "no channel left", "password+totp": "password and authenticator",
        "password": "password", "totp": "authenticator code", "oidc": "single sign-on",
        "report": "provider report",
    },
    "event": {
        "bill.issued": "bill issued", "bill.unpaid": "unpaid bill", "bill.paid": "bill paid",
        "bill.payment_reversed": "payment reversed", "usage.abnormal": "abnormal usage",
        "account.suspended": "supply suspended", "account.reconnected": "supply reconnected",
        "final_demand": "final demand", "suspension_due": "suspension due",
        "reconnection": "reconnection notice",
    },
    "reason": {
        "no_contact": "no_contact", "opted_out": "opted_out", "no_template": "no_template",
        "planned by policy": "planned by policy", "quiet hours": "quiet hours",
        "bill paid": "bill paid", "collections ladder": "collections ladder",
        "ambiguous again after one resend": "ambiguous again after one resend",
        "the ledger changed since it was rendered: rendered again":
            "the ledger changed since it was rendered: rendered again",
    },
    "queue": {
        "events": "events", "maintenance": "maintenance", "webhooks": "producer callbacks",
        "push": "push", "sms": "sms", "email": "email", "voice": "voice",
        "postcard": "postcard",
    },
    "action": {
        "account.protections": "protections changed", "agent.added": "agent added",
        "agent.disabled": "agent disabled", "agent.updated": "agent updated",
        "callback.clear": "callback URL removed", "callback.register": "callback URL set",
        "case.outcome": "case outcome recorded", "case.reassigned": "case reassigned",
        "collection.stage": "collections stage", "complained": "complaint recorded",
        "delivery.cancel": "delivery cancelled", "delivery.retry": "delivery retried",
        "delivery.send_now": "deferred delivery sent now", "hold.create": "hold placed",
        "hold.release": "hold released", "key.created": "key created",
        "key.revoked": "key revoked", "key.rotated": "key rotated",
        "list.export": "case list exported", "notices.export": "notices exported",
        "pii.view": "personal data viewed", "retention.purge": "old data purged",
        "service_record.export": "service record exported",
        "unreachable.export": "unreachable list exported", "log.export": "delivery log exported",
        "user.created": "user created", "user.disabled": "user disabled",
        "user.locked": "user locked", "user.password_accepted": "password accepted",
        "user.password_changed": "password changed", "user.role_changed": "role changed",
        "user.sign_in": "signed in", "user.sign_in_failed": "sign-in failed",
        "user.sign_out": "signed out", "user.totp_enrolled": "authenticator enrolled",
        "user.totp_reset": "authenticator reset", "postcard.reprint": "postcard reprinted",
    },
    "detail": {
        "reason": "reason", "note": "note", "permanent": "permanent failure",
        "error": "error", "provider": "provider", "provider_id": "provider id",
        "sid": "provider id", "until": "until", "retry_in": "retry in (seconds)",
        "batch": "print batch", "pdf": "file", "pdf_sha256": "file checksum",
        "retry_of": "retry of delivery", "retried_as": "retried as delivery", "by": "by",
        "found_by": "found by", "fallback": "fallback channel", "voicemail": "voicemail",
        "attempt": "attempt", "code": "code", "channel": "channel", "was": "was",
        "new_delivery": "new delivery", "format": "format", "rows": "rows",
        "status": "status", "ambiguous_resend": "resent after no answer",
        "cutoff": "cutoff", "sent_now": "sent now", "content_sha256": "content checksum",
        "segments": "SMS segments", "price": "price", "carrier": "carrier",
        "to": "to", "from": "from", "role": "role", "username": "user",
        "ip": "address", "target": "target", "count": "count",
        "template": "template", "template_sha256": "template checksum",
        "transient": "temporary failure", "twilio_status": "provider status",
        "provider_status": "provider status", "mitake_status": "provider status",
        "smtp_response": "mail server reply", "error_code": "error code",
        "awaiting_batch": "waiting for the print batch", "attempt_began": "attempt began",
        "hold": "hold", "correction": "correction", "level": "level", "kind": "kind",
        "accepted": "accepted", "rejected": "refused", "msgid": "provider id",
        "message_id": "provider id", "language": "language", "urgent": "urgent",
        "deadline": "deadline", "resolve_by": "resolve by", "at": "at",
        "recipients": "recipients", "method": "how", "client": "from address", "next": "next step",
        "agent_id": "agent", "expires_at": "expires", "name": "name", "area": "area",

    },
}  # fmt: skip
"""Each group's codes and their English words (the catalog's source text)."""

_DETAIL_VALUE_GROUPS = {
    "status": "status", "was": "status", "channel": "channel", "fallback": "channel",
    "reason": "reason", "note": "reason", "provider": "provider",
    "role": "role", "method": "word", "next": "word",
    "found_by": "word",
}  # fmt: skip
"""Detail keys whose values are codes of a group."""
_FALLBACK = re.compile(r"([a-z]+) delivery (\d+)")
"""``flows.fallback``'s note of the delivery it created next."""
_LINKED = {"retry_of": "/ops/deliveries/{}", "retried_as": "/ops/deliveries/{}",
           "new_delivery": "/ops/deliveries/{}"}  # fmt: skip


def word(t: Translations, group: str, code: object) -> str:
    """``code`` of ``group`` in the language of ``t``; an unknown code as it is."""
    if code is None or code == "":
        return "—"
    text = str(code)
    english = GROUPS.get(group, {}).get(text)
    return t.gettext(english) if english is not None else text


@cache
def _areas(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: want a mapping of area code to names per language")
    return {
        str(code): {str(lang): str(name) for lang, name in (names or {}).items()}
        for code, names in data.items()
    }


def area_names(language: str) -> dict[str, str]:
    """Every configured area's name in ``language`` (its code where that language has none)."""
    found = _areas(get_settings().areas_file)
    return {code: names.get(language) or names.get("en") or code for code, names in found.items()}


def area_name(language: str, code: str | None) -> str:
    """An area's display name from config; the code itself for an area config does not name."""
    if not code:
        return "—"
    return area_names(language).get(code, code)


def _value(t: Translations, key: str, value: Any, tz: ZoneInfo) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return t.gettext("yes" if value else "no")
    if isinstance(value, Mapping):
        return "; ".join(
            f"{word(t, 'detail', k)} {_value(t, str(k), v, tz)}" for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return ", ".join(_value(t, key, v, tz) for v in value)
    if isinstance(value, str):
        if key == "template":
            return _template(t, value)
        if key.endswith("sha256"):
            return value[:12] + "…"  # enough to compare by eye; the whole one is in the API
        if key == "area":
            return area_name(t.language, value)
        if key == "fallback" and value in GROUPS["word"]:
            return word(t, "word", value)
        if key == "fallback" and (chain := _FALLBACK.fullmatch(value)):
            return t.gettext("%(channel)s delivery %(id)s") % {
                "channel": word(t, "channel", chain[1]),
                "id": chain[2],
            }
        if key in _DETAIL_VALUE_GROUPS:
            return word(t, _DETAIL_VALUE_GROUPS[key], shown_text(value, key))
        try:
            at = datetime.fromisoformat(value) if len(value) >= 16 and value[4] == "-" else None
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            return local_time.shown(at, tz)
    return shown_text(value, key)


def _template(t: Translations, path: str) -> str:
    """``bill.unpaid/sms.zh-TW.j2`` as "unpaid bill · sms · 中文"."""
    event, _, rest = path.partition("/")
    channel, _, language = rest.removesuffix(".j2").partition(".")
    if not (event and channel and language):
        return path
    return " · ".join(
        (
            word(t, "event", event),
            word(t, "channel", channel),
            LANGUAGE_NAMES.get(language, language),
        )
    )


def details(
    t: Translations, detail: Mapping[str, Any] | None, tz: ZoneInfo
) -> list[tuple[str, str, str | None]]:
    """A timeline or audit entry's detail as ``(name, value, link)`` words, masked, in order."""
    return [
        (
            word(t, "detail", key),
            _value(t, key, value, tz),
            _LINKED[key].format(value) if key in _LINKED and isinstance(value, int) else None,
        )
        for key, value in (detail or {}).items()
    ]


def install(env: Environment) -> None:
    """Add the ``word``, ``area`` and ``details`` filters to the pages' Environment."""

    @pass_context
    def word_filter(context: Context, code: object, group: str) -> str:
        return word(context["translations"], group, code)

    @pass_context
    def area_filter(context: Context, code: str | None) -> str:
        return area_name(context["language"], code)

    @pass_context
    def details_filter(
        context: Context, detail: Mapping[str, Any] | None, tz: ZoneInfo
    ) -> list[tuple[str, str, str | None]]:
        return details(context["translations"], detail, tz)

    env.filters.update(word=word_filter, area=area_filter, details=details_filter)
