"""Explicit registry of channel providers: ``@register("sms", "sandbox")``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from channels.base import CHANNEL_NAMES, Channel

__all__ = ["create", "providers", "register"]

_Factory = Callable[..., Channel]
_F = TypeVar("_F", bound=_Factory)
_registry: dict[tuple[str, str], _Factory] = {}


def register(channel: str, provider: str) -> Callable[[_F], _F]:
    """Register a factory for ``provider`` of ``channel``; a duplicate is refused."""
    if channel not in CHANNEL_NAMES:
        raise ValueError(f"unknown channel {channel!r}; known: {', '.join(CHANNEL_NAMES)}")

    def decorate(factory: _F) -> _F:
        key = (channel, provider)
        if key in _registry:
            raise ValueError(f"provider {provider!r} is already registered for {channel!r}")
        _registry[key] = factory
        return factory

    return decorate


def providers(channel: str) -> list[str]:
    """The provider names registered for ``channel``."""
    _load_builtin()
    return sorted(p for (c, p) in _registry if c == channel)


def create(channel: str, provider: str, **options: Any) -> Channel:
    """Build the ``provider`` of ``channel`` with its options."""
    _load_builtin()
    try:
        factory = _registry[(channel, provider)]
    except KeyError:
        known = ", ".join(providers(channel)) or "none"
        raise LookupError(
            f"no provider {provider!r} for channel {channel!r}; registered: {known}"
        ) from None
    return factory(**options)


_BUILTIN = (
    "channels.sandbox",
    "channels.twilio_sms",
    "channels.mitake_sms",
    "channels.twilio_voice",
    "channels.smtp_email",
    "channels.fcm_push",
    "channels.postcard_print",
)


def _load_builtin() -> None:
    # Importing a provider module registers it; the list is explicit, not
    # scanned, and imported on first use so a process pays only for what it sends.
    for module in _BUILTIN:
        importlib.import_module(module)
