"""Opaque tokens in the callback URLs we give Twilio: which delivery, issued when, signed.

A status callback or voice-menu URL ends in a token, never in a bare id::

    {public_url}/v1/callbacks/twilio/status/{token}
    {public_url}/v1/callbacks/twilio/gather/{token}

    token = base64url(version ‖ delivery_id ‖ issued_at ‖ mac), no padding (44 characters)
    mac   = HMAC-SHA256(callback key, "notifier-twilio-callback" ‖ purpose ‖ the bytes before)[:16]

``version`` is one byte (1), ``delivery_id`` and ``issued_at`` (Unix seconds)
eight bytes each, big-endian. The purpose (``status``, ``gather`` or ``machine``) is in the
MAC, so a status token opens no voice menu. An email's bounce address carries a
``bounce`` token in its local part (notifier.bounces.verp), under the same key. Twilio's own ``X-Twilio-Signature``
covers the whole URL, so both checks must pass: a leaked auth token alone
forges no report, and a captured request replays only inside the window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from notifier.settings import Settings

__all__ = [
    "CallbackToken",
    "Purpose",
    "TokenRefused",
    "callback_url",
    "issue",
    "public_url",
    "read",
    "signing_key",
    "unverified_delivery_id",
]

Purpose = Literal["status", "gather", "machine", "bounce"]
_VERSION = 1
_LAYOUT = struct.Struct(">BQQ")
_MAC_BYTES = 16
_DOMAIN = b"notifier-twilio-callback\x00"
_SKEW = timedelta(minutes=5)
"""Clocks of the worker that issued a token and the API that reads it may differ this much."""


@dataclass(frozen=True, slots=True)
class CallbackToken:
    delivery_id: int
    issued_at: datetime


class TokenRefused(Exception):
    """A token that is malformed, not ours (its MAC fails) or outside its window."""

    def __init__(self, reason: str, *, delivery_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delivery_id = delivery_id
        """Set only once the MAC holds: an id from a forged token means nothing."""


CALLBACK_PREFIX = "/v1/callbacks/twilio"


def public_url(
    settings: Settings,
    path: str,
    *,
    query: str = "",
    root_path: str = "",
    forwarded_proto: str | None = None,
    forwarded_host: str | None = None,
) -> str:
    """The public URL of the app's ``path``: what Twilio is given, and what its signature covers.

    ``path`` is the app's own route path, without the root path a proxy strips
    (uvicorn ``--root-path``); ``NOTIFIER_PUBLIC_URL`` already carries that
    prefix. Only behind a proxy that ``NOTIFIER_TRUST_FORWARDED_HEADERS`` says
    is ours do ``X-Forwarded-Proto``/``-Host`` name the scheme and host, and then
    the root path is the prefix; anyone else could name any host in them.
    """
    if settings.trust_forwarded_headers and forwarded_host:
        # A proxy chain appends: the first value is what the caller used.
        proto = (forwarded_proto or "https").split(",")[0].strip()
        base = f"{proto}://{forwarded_host.split(',')[0].strip()}{root_path.rstrip('/')}"
    else:
        base = settings.public_url.rstrip("/")
    url = base + path
    return f"{url}?{query}" if query else url


def callback_url(settings: Settings, purpose: Purpose, token: str) -> str:
    """The URL given to Twilio for one delivery's ``purpose`` callbacks."""
    return public_url(settings, f"{CALLBACK_PREFIX}/{purpose}/{token}")


def signing_key(settings: Settings) -> bytes:
    """``NOTIFIER_CALLBACK_KEY``, or in the embedded mode a key derived from Twilio's token.

    Settings refuse an empty key when deployed with Twilio, so the derived key
    only ever serves a single machine.
    """
    key = settings.callback_key.get_secret_value()
    if key:
        return key.encode()
    auth_token = settings.twilio.auth_token.get_secret_value()
    return hmac.new(b"notifier-embedded-callback-key", auth_token.encode(), hashlib.sha256).digest()


def _mac(key: bytes, purpose: Purpose, payload: bytes) -> bytes:
    message = _DOMAIN + purpose.encode() + b"\x00" + payload
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def issue(key: bytes, delivery_id: int, *, purpose: Purpose, now: datetime) -> str:
    """A token for ``delivery_id``'s ``purpose`` callbacks, issued at ``now``."""
    payload = _LAYOUT.pack(_VERSION, delivery_id, int(now.timestamp()))
    raw = payload + _mac(key, purpose, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def read(
    key: bytes, token: str, *, purpose: Purpose, now: datetime, window: timedelta
) -> CallbackToken:
    """The delivery and issue time a token names, if it is ours and in its window."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenRefused("malformed token") from None
    if len(raw) != _LAYOUT.size + _MAC_BYTES:
        raise TokenRefused("malformed token")
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    if not hmac.compare_digest(mac, _mac(key, purpose, payload)):
        raise TokenRefused("token signature does not match")
    version, delivery_id, issued = _LAYOUT.unpack(payload)
    if version != _VERSION:
        raise TokenRefused(f"token version {version}", delivery_id=delivery_id)
    issued_at = datetime.fromtimestamp(issued, UTC)
    if now - issued_at > window:
        reason = f"token issued {issued_at:%Y-%m-%dT%H:%MZ}, outside the window"
        raise TokenRefused(reason, delivery_id=delivery_id)
    if issued_at - now > _SKEW:
        raise TokenRefused("token issued in the future", delivery_id=delivery_id)
    return CallbackToken(delivery_id=delivery_id, issued_at=issued_at)


def unverified_delivery_id(token: str) -> int | None:
    """The delivery id a token names, its MAC unchecked; None if it is not a token's shape.

    For the provider simulators' tallies of what they were sent (they hold no
    key), never for a decision: :func:`read` is the only way in.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _LAYOUT.size + _MAC_BYTES:
        return None
    return int(_LAYOUT.unpack(raw[: _LAYOUT.size])[1])
