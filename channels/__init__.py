"""Delivery channels behind one contract.

A channel takes a rendered :class:`Message` and returns a :class:`SendResult`
carrying the provider's id, or raises one of (``send_many`` sends a batch
concurrently and returns each message's result or error instead)::

    ChannelError
    ├── TransientChannelError   retry later (connect timeouts, 5xx, 429, SMTP 4xx)
    ├── PermanentChannelError   never retry; start the fallback channel
    ├── AmbiguousChannelError   the provider may have it (read timeout, reset after
    │                           the request left): never resend blindly, look it up
    └── ProviderChannelError    our account, credentials or sender: hold the provider's
                                sends (its circuit opens), blame no recipient

That split drives every retry and fallback in ``notifier``. This package knows
nothing of the database or of ``notifier``; providers are found through the
explicit registry in :mod:`channels.registry`.
"""

from __future__ import annotations

from channels.base import (
    CHANNEL_NAMES,
    AmbiguousChannelError,
    Channel,
    ChannelError,
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendOutcome,
    SendResult,
    TransientChannelError,
)
from channels.registry import create, providers, register

__all__ = [
    "CHANNEL_NAMES",
    "AmbiguousChannelError",
    "Channel",
    "ChannelError",
    "Message",
    "PermanentChannelError",
    "ProviderChannelError",
    "SendOutcome",
    "SendResult",
    "TransientChannelError",
    "create",
    "providers",
    "register",
]
