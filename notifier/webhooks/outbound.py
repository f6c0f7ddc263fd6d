"""Where a producer callback may go, and the one POST that goes there.

A producer key chooses the URL, so the URL is an attacker's if the key is: it
must not reach this machine, the utility's network or a cloud's metadata
service, and what comes back must not tell the producer what is there.

* The host is resolved (``getaddrinfo``, which also reads every textual form of an
  address the way the socket would: ``2130706433``, ``127.1``, ``0x7f000001``,
  ``0``, ``localhost.``) at registration and again at every send, and every
  address it resolves to is checked (:func:`blocked`): loopback, private,
  link-local (169.254.169.254 among them), CGNAT 100.64/10, unique-local fc00::/7,
  site-local, multicast, reserved and unspecified addresses are refused, and an
  IPv6 address that carries an IPv4 one (IPv4-mapped or -compatible, 6to4,
  Teredo, NAT64 64:ff9b::/96 and 64:ff9b:1::/48) is refused when the IPv4
  address is, NAT64 always (the translator would reach anything behind it).
* The POST connects to the address that was checked, not to the name: a second
  lookup could answer differently (DNS rebinding). The URL keeps the name for the
  ``Host`` header and, over https, for the TLS server name and certificate check.
* Redirects are not followed; an answer is read for its status only.
* What the producer is told is a category (:data:`ERROR_CATEGORIES`), never a
  body, a socket message or an address.

``NOTIFIER_CALLBACK_ALLOW_PRIVATE=true`` lifts the address check for local demos
and tests (a receiver on 127.0.0.1); it is off by default in every mode.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

import httpx

__all__ = [
    "ERROR_CATEGORIES",
    "Answer",
    "BlockedUrl",
    "Target",
    "blocked",
    "post",
    "resolve",
]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

ERROR_CATEGORIES: Final = (
    "dns",
    "blocked address",
    "timeout",
    "refused",
    "tls",
    "network",
    "redirect",
    "http 4xx",
    "http 5xx",
)
"""Everything a producer may read of a failed POST."""

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class BlockedUrl(ValueError):
    """A callback URL whose host does not resolve, or resolves where we do not POST."""

    def __init__(self, reason: str, *, category: str) -> None:
        super().__init__(reason)
        self.category = category


@dataclass(frozen=True, slots=True)
class Target:
    """A URL with the addresses its host resolved to, each checked."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    """One POST's result as the outbox records it."""

    code: int | None
    """The HTTP status, or None when no answer came."""
    category: str | None
    """None on a 2xx; otherwise one of :data:`ERROR_CATEGORIES`."""
    retry_after: float | None = None


def blocked(address: IPAddress) -> str | None:
    """Why ``address`` may not receive a callback, or None if it is a public unicast one."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _NAT64):
            return "a NAT64 address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = blocked(embedded)
            return f"an IPv6 form of {inner}" if inner else None
        if address.is_site_local:
            return "a site-local address"
    checks = (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (cloud metadata lives there)"),
        (address.is_multicast, "a multicast address"),
        (address in _CGNAT, "a shared (CGNAT) address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((why for hit, why in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d, the deprecated IPv4-compatible form
        return ipaddress.IPv4Address(packed)
    return None


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve(url: str, *, allow_private: bool, resolver: Resolver = _system_resolver) -> Target:
    """``url``'s host resolved and every address checked; :class:`BlockedUrl` if not fit."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise BlockedUrl("has no host", category="dns")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = resolver(host.rstrip(".") or host, port)
    except (OSError, UnicodeError) as exc:
        log.info("callback host %r does not resolve: %s", host, exc)
        raise BlockedUrl(f"the host {host!r} does not resolve", category="dns") from None
    if not found:
        raise BlockedUrl(f"the host {host!r} does not resolve", category="dns")
    addresses = tuple(found)
    if not allow_private:
        for text in addresses:
            why = blocked(ipaddress.ip_address(text.split("%", 1)[0]))
            if why is not None:
                # The address itself is not repeated to the producer: a name's answer is ours.
                raise BlockedUrl(
                    f"the host {host!r} resolves to {why}; callbacks go to public addresses only",
                    category="blocked address",
                )
    return Target(url=url, host=host, port=port, addresses=addresses)


def post(
    target: Target,
    content: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
) -> Answer:
    """POST ``content`` to the first of ``target``'s checked addresses that takes a connection."""
    parts = urlsplit(target.url)
    answer = Answer(code=None, category="network")
    for address in target.addresses:
        pinned = _pinned(parts, address)
        extensions = {"sni_hostname": target.host} if parts.scheme == "https" else {}
        try:
            with httpx.Client(
                timeout=timeout, follow_redirects=False, transport=transport, trust_env=False
            ) as client:
                request = client.build_request(
                    "POST",
                    pinned,
                    content=content,
                    headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]},
                    extensions=extensions,
                )
                response = client.send(request)
        except httpx.ConnectError as exc:
            answer = Answer(code=None, category=_connect_category(exc))
            log.info("callback to %s (%s): %s", target.host, address, exc)
            if answer.category == "tls":
                return answer  # another address of the same name serves the same certificate
            continue
        except httpx.TimeoutException as exc:
            log.info(
                "callback to %s (%s): timed out (%s)", target.host, address, type(exc).__name__
            )
            return Answer(code=None, category="timeout")
        except httpx.HTTPError as exc:
            log.info("callback to %s (%s): %s", target.host, address, exc)
            return Answer(code=None, category="network")
        return Answer(
            code=response.status_code,
            category=_status_category(response.status_code),
            retry_after=_seconds(response.headers.get("Retry-After")),
        )
    return answer


def _pinned(parts: SplitResult, address: str) -> str:
    shown = f"[{address}]" if ":" in address else address
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    return parts._replace(netloc=netloc).geturl()


def _connect_category(exc: httpx.ConnectError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return "tls"
        if isinstance(cause, ConnectionRefusedError):
            return "refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).lower()
    if "ssl" in text or "certificate" in text or "tls" in text:
        return "tls"
    if "refused" in text:
        return "refused"
    return "network"


def _status_category(code: int) -> str | None:
    if 200 <= code < 300:
        return None
    if 300 <= code < 400:
        return "redirect"
    return "http 5xx" if code >= 500 else "http 4xx"


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: our own backoff will do
