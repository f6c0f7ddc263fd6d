"""Which providers each channel uses, and their options, from Settings alone.

Real providers switch on when their credentials are set; otherwise the
sandbox records what would have been sent. ``NOTIFIER_PROVIDERS`` can name
the providers of a channel, in order, with weights: ``mitake,twilio`` sends
everything through mitake and moves to twilio only while mitake is unhealthy
(no weights: the first is weight 1, the others 0, standbys);
``mitake:3,twilio:1`` splits the traffic 3:1 among the healthy ones (a
provider without a weight then weighs 1; weight 0 is a standby). Which one is
healthy at the moment is decided by the delivery flow (flows/provider_routes.py).
Postcards always go to the print queue, printed in daily batches
(``notifier postcards batch``).
"""

from __future__ import annotations

from typing import Any

from notifier.settings import Settings, parse_provider_chain

__all__ = ["provider_chain", "provider_for", "provider_options"]


def provider_chain(settings: Settings, channel: str) -> list[tuple[str, int]]:
    """The ``channel``'s providers in order, each with its weight (0: a standby)."""
    listed = settings.providers.get(channel)
    if not listed:
        return [(provider_for(settings, channel), 1)]
    entries = parse_provider_chain(listed, field=f"NOTIFIER_PROVIDERS__{channel.upper()}")
    if all(weight is None for _, weight in entries):
        return [(name, 1 if i == 0 else 0) for i, (name, _) in enumerate(entries)]
    return [(name, 1 if weight is None else weight) for name, weight in entries]


def provider_for(settings: Settings, channel: str) -> str:
    """The provider name the ``channel`` uses first under ``settings``."""
    forced = settings.providers.get(channel)
    if forced:
        return parse_provider_chain(forced, field=f"NOTIFIER_PROVIDERS__{channel.upper()}")[0][0]
    twilio, smtp, fcm = settings.twilio, settings.smtp, settings.fcm
    if channel in {"sms", "voice"} and twilio.account_sid and twilio.auth_token.get_secret_value():
        return "twilio"
    if channel == "email" and smtp.host:
        return "smtp"
    has_fcm_credential = fcm.credentials_file or fcm.access_token.get_secret_value()
    if channel == "push" and fcm.project_id and has_fcm_credential:
        return "fcm"
    if channel == "postcard":
        return "print"
    return "sandbox"


def provider_options(settings: Settings, channel: str, provider: str) -> dict[str, Any]:
    """Keyword options for the provider's constructor."""
    if provider == "sandbox":
        return {"outbox_dir": settings.sandbox_dir}
    if provider == "twilio":
        t = settings.twilio
        options: dict[str, Any] = {
            "account_sid": t.account_sid,
            "auth_token": t.auth_token.get_secret_value(),
            "from_number": t.from_number,
            "messaging_service_sid": t.messaging_service_sid,
            "base_url": t.base_url,
            "timeout": t.timeout,
        }
        if channel == "voice":
            del options["messaging_service_sid"]  # a call needs a caller number
            options["dial_number"] = settings.service_dial_number
            options["voices"] = {
                language: chosen.model_dump() for language, chosen in settings.voice.voices.items()
            }
            options["machine_detection"] = settings.voice.machine_detection
            # The voice menu's URL carries a token per call: each Message brings its own.
        return options
    if provider == "mitake":
        k = settings.mitake
        return {
            "username": k.username,
            "password": k.password.get_secret_value(),
            "base_url": k.base_url,
            "timeout": k.timeout,
            "callback": k.callback,
            "max_length": k.max_length,
            "client_id_prefix": k.client_id_prefix,
        }
    if provider == "smtp":
        m = settings.smtp
        return {
            "host": m.host,
            "port": m.port,
            "username": m.username,
            "password": m.password.get_secret_value(),
            "starttls": m.starttls,
            "use_tls": m.use_tls,
            "from_address": m.from_address,
            "from_name": m.from_name,
            "reply_to": m.reply_to,
            "timeout": m.timeout,
            "connections": m.connections,
            "ehlo_name": m.ehlo_name,
        }
    if provider == "fcm":
        f = settings.fcm
        return {
            "project_id": f.project_id,
            "credentials_file": str(f.credentials_file) if f.credentials_file else None,
            "access_token": f.access_token.get_secret_value() or None,
            "base_url": f.base_url,
            "timeout": f.timeout,
            "sdk_retries": f.sdk_retries,
        }
    return {}
