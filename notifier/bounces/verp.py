"""The bounce address of one email: ``<local_part>+<token>@<domain>`` (VERP).

A remote MTA sends its delivery status notification to the envelope sender
(MAIL FROM) of the message it could not deliver, so an envelope sender per
delivery tells us which delivery bounced without parsing anything the
remote side wrote. The token is a ``bounce`` token of
notifier.deliveries.callback_tokens (44 base64url characters; with
``bounces+`` the local part stays under RFC 5321's 64). base64url is case
sensitive: an MTA that folds the local part's case (none of the common ones
do; RFC 5321 §2.4 forbids it) breaks the token, and the report is then
matched on the original Message-ID instead.
https://cr.yp.to/proto/verp.txt , https://www.rfc-editor.org/rfc/rfc5321#section-4.5.3.1.1
"""

from __future__ import annotations

from datetime import datetime, timedelta

from notifier.deliveries import callback_tokens
from notifier.deliveries.callback_tokens import CallbackToken
from notifier.settings import Settings

__all__ = ["bounce_address", "read_address", "token_of"]


def bounce_address(settings: Settings, delivery_id: int, *, now: datetime) -> str | None:
    """The envelope sender for ``delivery_id``'s email; None when no bounce domain is set."""
    bounces = settings.bounces
    if not bounces.domain:
        return None
    key = callback_tokens.signing_key(settings)
    token = callback_tokens.issue(key, delivery_id, purpose="bounce", now=now)
    return f"{bounces.local_part}+{token}@{bounces.domain}"


def token_of(settings: Settings, address: str) -> str | None:
    """The token of one of our bounce addresses (any case of the fixed parts); else None.

    ``bounces@domain`` with no token is ours too (an empty token): a
    complaint loop or an MTA that dropped the extension still reaches us,
    to be matched on the Message-ID.
    """
    bounces = settings.bounces
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not bounces.domain or domain.lower() != bounces.domain.lower():
        return None
    base, plus, token = local.partition("+")
    if base.lower() != bounces.local_part.lower():
        return None
    return token if plus else ""


def read_address(settings: Settings, token: str, *, now: datetime) -> CallbackToken:
    """The delivery a bounce token names; :class:`TokenRefused` if it is forged or too old."""
    return callback_tokens.read(
        callback_tokens.signing_key(settings),
        token,
        purpose="bounce",
        now=now,
        window=timedelta(days=settings.bounces.window_days),
    )
