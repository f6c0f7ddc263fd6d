"""The one contract every channel implements."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

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
]

log = logging.getLogger(__name__)
CHANNEL_NAMES: tuple[str, ...] = ("push", "sms", "email", "voice", "postcard")


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered notice for one channel, addressed and ready to send."""

    delivery_id: int
    channel: str
    to: tuple[str, ...]
    """E.164 numbers, an email address, push tokens or postal address lines."""
    body: str
    language: str = "zh-TW"
    subject: str | None = None
    html: str | None = None
    name: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    """Key/value payload carried alongside (push deep links, manifest fields)."""
    attempt: int = 1
    callback_url: str | None = None
    """Where the provider reports this message's status (Twilio's ``StatusCallback``)."""
    menu_url: str | None = None
    """Where a voice call's menu posts the key pressed (Twilio's ``<Gather action>``)."""
    machine_url: str | None = None
    """Where a call's answering-machine detection reports (``AsyncAmdStatusCallback``)."""
    expires_at: datetime | None = None
    """After this the notice is stale: a provider that holds messages for offline
    devices (push) drops it rather than deliver it late. None: the provider's default."""
    collapse_key: str | None = None
    """Messages with the same key replace each other on the device (a later dunning
    level replaces the earlier one); the same for every level of one notice."""
    priority: Literal["high", "normal"] = "normal"
    """``high`` wakes the device now (dunning); ``normal`` may wait for it to be awake."""
    return_path: str | None = None
    """Email: the envelope sender (MAIL FROM) bounces go back to, one per delivery (VERP);
    None: the From address."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider answered to an accepted send."""

    provider: str
    provider_id: str
    status: Literal["sent", "delivered"] = "sent"
    detail: Mapping[str, Any] = field(default_factory=dict)
    rejected: tuple[str, ...] = ()
    """Recipients the provider refused for good while others were accepted
    (e.g. unregistered push tokens in a multicast)."""


class ChannelError(Exception):
    """A send that did not go out; ``code`` is the provider's own error code."""

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}" if self.code else self.reason


class TransientChannelError(ChannelError):
    """The same send may succeed later; ``retry_after`` is the provider's hint."""

    def __init__(
        self, reason: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError):
    """The same send will never succeed; ``opt_out`` marks a recipient's refusal."""

    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        rejected: tuple[str, ...] = (),
        opt_out: bool = False,
    ) -> None:
        super().__init__(reason, code=code)
        self.rejected = rejected
        self.opt_out = opt_out


class AmbiguousChannelError(ChannelError):
    """The request may have reached the provider, and no answer came back.

    A read timeout, a connection reset or a server disconnect after the request
    was written: the provider may have accepted the send. Sending it again could
    be the customer's second copy, so it is neither retried nor failed; the
    caller finds out (:meth:`Channel.lookup`, a status report) or waits. A
    failure before anything reached the provider (refused, connect timeout)
    stays a :class:`TransientChannelError`.
    """


class ProviderChannelError(ChannelError):
    """Our account, credentials or sender are wrong: no send through this provider can succeed.

    Not the recipient's fault: no recipient is blamed, nothing falls back; the
    service holds the provider's sends until it works again (its circuit).
    ``provider`` names the provider (the service fills it in when the adapter did not).
    """

    def __init__(
        self, reason: str, *, code: str | None = None, provider: str | None = None
    ) -> None:
        super().__init__(reason, code=code)
        self.provider = provider


SendOutcome = SendResult | ChannelError
"""What became of one message of a :meth:`Channel.send_many`."""


def unexpected(channel: Channel, message: Message, exc: Exception) -> TransientChannelError:
    """An error no adapter mapping knew, logged whole, as a bounded retry."""
    log.exception("delivery %s: unexpected error from %s", message.delivery_id, channel.provider)
    return TransientChannelError(f"{type(exc).__name__}: {exc}", code="unexpected")


class Channel(abc.ABC):
    """One provider of one channel. Limits are data, not code."""

    channel: ClassVar[str]
    provider: ClassVar[str]
    max_in_flight: ClassVar[int] = 100
    """Sends of one :meth:`send_many` in flight at once (a provider's connection budget)."""

    @abc.abstractmethod
    async def send(self, message: Message) -> SendResult:
        """Send one message or raise a :class:`ChannelError` subclass."""

    async def send_many(
        self, messages: Sequence[Message], *, delays: Sequence[float] = ()
    ) -> list[SendOutcome]:
        """Send each message, concurrently; one outcome per message, in order.

        ``delays``: seconds to wait before each send (its slot in the
        provider's rate). A channel with a batch endpoint overrides this.
        Anything else raised (an adapter bug, an unmapped vendor error) comes
        back as a :class:`TransientChannelError` naming it, so one bad message
        neither loses the outcomes of the others nor is retried forever.
        """
        gate = asyncio.Semaphore(self.max_in_flight)

        async def one(message: Message, delay: float) -> SendOutcome:
            if delay > 0:
                await asyncio.sleep(delay)
            async with gate:
                try:
                    return await self.send(message)
                except ChannelError as exc:
                    return exc
                except Exception as exc:
                    return unexpected(self, message, exc)

        waits = list(delays) or [0.0] * len(messages)
        return list(await asyncio.gather(*map(one, messages, waits)))

    async def lookup(self, message: Message, *, since: datetime) -> Sequence[SendResult] | None:
        """The provider's records of ``message`` accepted since ``since``, oldest first.

        Asked after an :class:`AmbiguousChannelError`: ``[]`` says the provider
        has no such send, None (the default) that this provider cannot tell.
        Candidates match on what the provider keeps (recipient, text, time); the
        caller drops those it knows belong to other sends.
        """
        return None

    async def aclose(self) -> None:
        """Release connections; a channel may be reused until closed."""
        return None
