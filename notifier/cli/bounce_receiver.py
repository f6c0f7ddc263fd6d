"""The bounce receiver behind ``notifier bounces``: an aiosmtpd server in a thread.

It takes mail only for our bounce addresses
(``bounces+<token>@domain``, and ``bounces@domain``), refusing any other
recipient with 550 so it never relays or collects spam, reads each message
as a DSN or a complaint report (notifier.bounces.reports) and applies it
(notifier.flows.bounces); the fallback deliveries a hard bounce starts are
enqueued after the commit.

Replies, so that no report is lost: 250 once applied (or when it names no
delivery of ours, or is no report at all: logged, masked, and dropped,
since a reporting MTA would only send it again); 451 when the database is
not reachable or the delivery is still being sent, so the reporting MTA keeps
the report and delivers it again later, as it does with any 4xx.

aiosmtpd's ``Controller(port=0)`` fails its own readiness check (FIELD-NOTES):
the subclass reads the bound port first. Apart from the command so that
``notifier --help`` does not import aiosmtpd and the flows.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from notifier.bounces import verp
from notifier.bounces.reports import NotAReport, parse
from notifier.flows.bounces import NotYet, apply_report
from notifier.privacy.masking import mask_email
from notifier.runtime import Runtime

__all__ = ["BounceReceiver"]

log = logging.getLogger(__name__)


class _Handler:
    """aiosmtpd hooks: our bounce addresses only, then read and apply the report."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if verp.token_of(self.rt.settings, address) is None:
            log.info("bounces: refused a recipient that is not ours: %s", mask_email(address))
            return "550 5.1.1 No such mailbox here (bounce reports only)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
        try:
            report = parse(raw)
        except NotAReport as exc:
            log.warning("bounces: a message that is no report, dropped (%s)", exc)
            return "250 2.0.0 Ok: not a report, dropped"
        tokens = [
            token
            for address in envelope.rcpt_tos
            if (token := verp.token_of(self.rt.settings, address))
        ]
        try:
            outcome = await asyncio.to_thread(apply_report, self.rt, report, tokens)
        except NotYet:
            return "451 4.3.0 The message is still being sent; try again later"
        except Exception:
            log.exception("bounces: could not apply a report; the sender will try again")
            return "451 4.3.0 Local error in processing; try again later"
        if outcome.enqueue:
            await asyncio.to_thread(self.rt.dispatcher.deliver, outcome.enqueue)
        return f"250 2.0.0 Ok: {outcome.result}"


class _Controller(Controller):
    def _trigger_server(self) -> None:
        # Controller probes self.port, which with port 0 is not where it listens.
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        with socket.create_connection((self.hostname, self.port), timeout=5.0) as probe:
            probe.recv(1024)


class BounceReceiver:
    """The receiver in a thread of its own: ``start()`` → (host, port), ``stop()``."""

    def __init__(self, rt: Runtime, *, host: str | None = None, port: int | None = None) -> None:
        settings = rt.settings.bounces
        self.rt = rt
        self.host = settings.host if host is None else host
        self.port = settings.port if port is None else port
        self._controller: _Controller | None = None

    def start(self) -> tuple[str, int]:
        options: dict[str, Any] = {
            "server_hostname": self.rt.settings.bounces.domain or "bounces.localhost",
            "ident": "notifier bounces",
            "data_size_limit": self.rt.settings.bounces.max_bytes,
        }
        controller = _Controller(_Handler(self.rt), hostname=self.host, port=self.port, **options)
        controller.start()
        self._controller = controller
        self.port = controller.port
        return self.host, self.port

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
