"""Email over SMTP with aiosmtplib, a few connections each reused across sends.

Reusing connections is the point: to aiosmtpd, one connection carried
~670 messages/s, a new one per message ~260/s, a new TLS+auth one ~107/s
(FIELD-NOTES). But SMTP is one message at a time per connection, so a
server that takes 50 ms per message allows 20/s on one: an instance keeps
up to ``connections`` of them, each opened (connect, STARTTLS, AUTH) on
first need and then kept, and lends each to one send at a time. The
instance belongs to the event loop of its first send (its sockets do): use
one instance per loop, as ``notifier.runtime`` does with one per thread.

Errors are mapped once, here::

    4xx reply (RCPT, DATA, AUTH 454, 421 …)         → TransientChannelError(code="4xx")
    AUTH 535 (bad credentials), 530 (authentication
      required) to any command                      → ProviderChannelError (our login)
    5xx reply to RCPT or DATA                       → PermanentChannelError(rejected=to)
    5xx reply to MAIL/EHLO/banner, other 5xx AUTH,
      server lacking STARTTLS/AUTH/SMTPUTF8         → PermanentChannelError (configuration)
    refused, timed out, disconnected, OSError       → TransientChannelError

Vendor and protocol quirks handled:

* Reply classes: 4yz is a transient, 5yz a permanent negative completion;
  the enhanced code (``5.1.1``) stays in the reason, the basic code is
  ``code``. https://www.rfc-editor.org/rfc/rfc5321#section-4.2.1 ,
  https://www.rfc-editor.org/rfc/rfc3463
* AUTH answers 454 for a temporary failure and 535 for bad credentials, and
  both raise ``SMTPAuthenticationError``: the reply class decides.
  https://www.rfc-editor.org/rfc/rfc4954#section-6
* Servers drop idle connections (the suggested server timeout is 5 minutes)
  or answer 421 and close: a send on a *reused* connection that meets a
  disconnect or a 421 reconnects once and sends that message again.
  https://www.rfc-editor.org/rfc/rfc5321#section-4.5.3.2.7 ,
  https://www.rfc-editor.org/rfc/rfc5321#section-3.8
* aiosmtplib closes the connection itself on a disconnect, a read timeout or
  a 421, but not when the caller cancels mid-command: we drop it then, or the
  next command would read the stale reply.
  https://aiosmtplib.readthedocs.io/en/stable/reference.html
* aiosmtplib raises ``SMTPRecipientsRefused`` only when *every* recipient is
  refused; otherwise ``send_message`` returns the refusals, which become
  ``SendResult.rejected``.
  https://aiosmtplib.readthedocs.io/en/stable/reference.html
* aiosmtplib's ``start_tls=None`` default upgrades only if the server offers
  STARTTLS; we pass True or False so a server that stops offering it fails
  loudly instead of receiving credentials and bills in clear.
  https://aiosmtplib.readthedocs.io/en/stable/encryption.html
* aiosmtplib's ``timeout`` bounds each socket operation, not the whole send.
  https://aiosmtplib.readthedocs.io/en/stable/timeouts.html
* Chinese display names and subjects are RFC 2047 encoded words, made by
  ``email.headerregistry.Address`` and the header registry rather than by
  hand. https://www.rfc-editor.org/rfc/rfc2047 ,
  https://docs.python.org/3/library/email.headerregistry.html
* Not every relay offers 8BITMIME: bodies are built under a 7-bit policy
  (base64 for Chinese text, quoted-printable for mostly ASCII), so the
  message never needs downgrading. https://www.rfc-editor.org/rfc/rfc6152
* The policy is ``email.policy.SMTP`` (CRLF), not ``default`` (LF): text is
  put in canonical CRLF form *before* it is base64 or quoted-printable
  encoded, so every part decodes to CRLF lines, as RFC 2045 wants of text;
  aiosmtplib's own SMTP policy only fixes the line ends it can see.
  https://www.rfc-editor.org/rfc/rfc2045#section-6.8 ,
  https://docs.python.org/3/library/email.policy.html#email.policy.SMTP
* Bounces come back to the envelope sender, not to From: a message with a
  ``return_path`` (one VERP address per delivery, ``bounces+<token>@domain``)
  names it in MAIL FROM, so a delivery status notification names its
  delivery. The receiving MTA writes the ``Return-Path`` header from it; we
  never write one. https://www.rfc-editor.org/rfc/rfc5321#section-4.4
* ``Auto-Submitted: auto-generated`` tells vacation responders and other
  robots not to answer a notice. https://www.rfc-editor.org/rfc/rfc3834#section-5
* Building a message with ``email.message`` and flattening it again costs
  ~1.7 ms of CPU per message, most of it the header registry parsing and
  refolding headers that are the same for every message. The bytes are put
  together here instead: From, Reply-To and the MIME skeleton once per
  instance, per message only Subject, To, Date, Message-ID and the encoded
  bodies, with ``email.header`` for RFC 2047 words, ``binascii``/``base64``
  for the bodies, and the real header registry only for a header outside
  the plain shapes (an over-long ASCII subject, several recipients); they are
  sent with ``sendmail`` so aiosmtplib does not flatten them again. A message
  to a non-ASCII address (SMTPUTF8) is still built as an ``EmailMessage`` and
  sent with ``send_message``, which asks for SMTPUTF8. The bytes parse back
  to the headers and bodies ``email.message`` would give (tests/channels/
  test_smtp_bytes.py).
* The EHLO name is ``ehlo_name``, else aiosmtplib's default (the machine's
  FQDN, ``socket.getfqdn()``): in a container that is a random id, which
  strict receivers and spam scores hold against us.
  https://www.rfc-editor.org/rfc/rfc5321#section-4.1.1.1
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.errors
import email.policy
import email.utils
import random
import ssl
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, ClassVar

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPNotSupported,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from channels.base import (
    Channel,
    ChannelError,
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendResult,
    TransientChannelError,
)
from channels.registry import register

__all__ = ["SmtpEmail"]

# Bodies are base64/quoted-printable, never raw 8-bit, of CRLF text (module docstring).
_POLICY = email.policy.SMTP.clone(cte_type="7bit")
_SERVICE_CLOSING = 421
_ADDRESS_ERRORS = (ValueError, IndexError, email.errors.HeaderParseError)
_CRLF = b"\r\n"
_MAX_LINE = 78  # RFC 5322 2.1.1: "SHOULD be no more than 78 characters", as _POLICY folds
_WORDS_LINE = 76  # email.header's default of 78 makes encoded words of 76, past RFC 2047's 75
_SNIFF_LINES = 10  # as email.contentmanager: the first lines decide base64 or quoted-printable


def _address(addr_spec: str, display_name: str = "") -> Address:
    """A header address; ValueError (or a parse error) for a malformed one."""
    return Address(display_name=display_name, addr_spec=addr_spec.strip())


def _folded(name: str, value: Any) -> bytes:
    """``name: value`` as the header registry folds it under our policy, CRLF-ended."""
    return _POLICY.fold_binary(name, _POLICY.header_factory(name, value))


def _plain(value: str) -> bool:
    """Printable ASCII without line breaks: fits a header as it is."""
    return value.isascii() and value.isprintable()


def _subject_line(subject: str) -> bytes:
    if (
        _plain(subject)
        and len(subject) + len("Subject: ") <= _MAX_LINE
        and subject.strip() == subject
    ):
        return b"Subject: " + subject.encode("ascii") + _CRLF
    if subject.isprintable() and not subject.isascii() and subject.strip() == subject:
        # RFC 2047 words of at most 75 characters, split between characters, never inside one.
        words = Header(subject, "utf-8", _WORDS_LINE, "Subject").encode(linesep="\r\n")
        return b"Subject: " + words.encode("ascii") + _CRLF
    return _folded("Subject", subject)  # long ASCII, odd spacing, control characters


def _to_line(recipients: list[Address]) -> bytes:
    if len(recipients) == 1:
        (to,) = recipients
        name = to.display_name
        if not name or _plain(name):
            line = str(to)  # quotes a name with specials, as the registry does
        elif name.isprintable() and name.strip() == name:
            words = Header(name, "utf-8", _WORDS_LINE, "To").encode(linesep="\r\n")
            line = f"{words} <{to.addr_spec}>"
        else:
            return _folded("To", recipients)
        if max(map(len, f"To: {line}".split("\r\n"))) <= _MAX_LINE:
            return b"To: " + line.encode("ascii") + _CRLF
    return _folded("To", recipients)


def _text_part(text: str, subtype: str) -> tuple[bytes, bytes]:
    """A text/``subtype`` part: its headers, a blank line and its 7-bit body.

    As ``email.contentmanager`` decides: short ASCII lines go as they are,
    otherwise base64 or quoted-printable, whichever is shorter for the first
    lines; in each case the text in CRLF form (module docstring).
    """
    lines = text.encode("utf-8").splitlines()
    cte = "7bit"
    if max(map(len, lines), default=0) > _MAX_LINE or not all(map(bytes.isascii, lines)):
        sniff = b"\n".join(lines[:_SNIFF_LINES]) + b"\n"
        qp_longer = len(binascii.b2a_qp(sniff, istext=True)) > len(binascii.b2a_base64(sniff))
        cte = "base64" if qp_longer else "quoted-printable"
    if cte == "base64":
        body = base64.encodebytes(_CRLF.join(lines) + _CRLF).replace(b"\n", _CRLF)
    elif cte == "quoted-printable":
        # Encoded with LF line ends (quopri would escape a CR as =0D), sent as CRLF.
        body = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True).replace(b"\n", _CRLF)
    else:
        body = _CRLF.join(lines) + _CRLF
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return head.encode("ascii"), body


@register("email", "smtp")
class SmtpEmail(Channel):
    """Send email through one SMTP server (submission port, STARTTLS, AUTH)."""

    channel: ClassVar[str] = "email"
    provider: ClassVar[str] = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int = 587,
        username: str = "",
        password: str = "",
        starttls: bool = True,
        use_tls: bool = False,
        from_address: str,
        from_name: str = "",
        reply_to: str = "",
        timeout: float = 10.0,
        message_id_domain: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        connections: int = 16,
        ehlo_name: str = "",
    ) -> None:
        if not host.strip():
            raise ValueError("smtp: the host setting is empty")
        if not from_address.strip():
            raise ValueError("smtp: the from_address setting is empty")
        try:
            self._from = _address(from_address, from_name)
            self._reply_to = _address(reply_to) if reply_to.strip() else None
        except _ADDRESS_ERRORS as exc:
            raise ValueError(f"smtp: from_address or reply_to is not an address: {exc}") from exc
        self.host = host.strip()
        self.port = port
        self.username = username
        self._password = password
        # Implicit TLS (port 465) replaces STARTTLS; the two are exclusive.
        self.use_tls = use_tls
        self.starttls = starttls and not use_tls
        self.timeout = timeout
        self.message_id_domain = message_id_domain or self._from.domain
        # The same for every message: folded once, not once per message (module docstring).
        self._from_line = _folded("From", self._from)
        self._reply_to_line = b"" if self._reply_to is None else _folded("Reply-To", self._reply_to)
        self._ascii_from = self._from.addr_spec.isascii()
        self._tls_context = tls_context
        if ehlo_name and (ehlo_name != ehlo_name.strip() or any(c.isspace() for c in ehlo_name)):
            raise ValueError(f"smtp: ehlo_name must be one host name, not {ehlo_name!r}")
        self.ehlo_name = ehlo_name or None
        if connections < 1:
            raise ValueError(f"smtp: connections must be at least 1, not {connections!r}")
        self._lanes = [_Lane() for _ in range(connections)]
        # Last in, first out: the lane just used is open, so sends one after
        # another share one connection and the others open only under load.
        self._free: asyncio.LifoQueue[_Lane] | None = None
        self._free_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"SmtpEmail(host={self.host!r}, port={self.port}, user={self.username!r})"

    async def send(self, message: Message) -> SendResult:
        """Send ``message`` over the shared connection, opening it if needed."""
        to = tuple(message.to)
        if not to:
            raise PermanentChannelError("smtp: no recipient", code="no_recipient")
        try:
            message_id, mail = self._build(message)
        except _ADDRESS_ERRORS as exc:
            raise PermanentChannelError(
                f"smtp: cannot build the message: {exc}", code="invalid_message", rejected=to
            ) from exc
        free = self._free_lanes()
        lane = await free.get()
        try:
            sender = (message.return_path or self._from.addr_spec).strip()
            refused, reply = await self._send_with_one_reconnect(lane, mail, sender, to)
        except (SMTPException, OSError, ValueError) as exc:
            raise _map_error(exc, to) from exc
        finally:
            free.put_nowait(lane)
        detail: dict[str, Any] = {"smtp_response": f"250 {reply}"}
        if refused:
            # Some recipients refused while others were accepted (multi-address sends only).
            detail["refused"] = {addr: f"{r.code} {r.message}" for addr, r in refused.items()}
        return SendResult(
            provider=self.provider,
            provider_id=message_id,
            status="sent",
            detail=detail,
            rejected=tuple(addr for addr, r in refused.items() if 500 <= r.code < 600),
        )

    async def aclose(self) -> None:
        """QUIT and close the open connections."""
        for lane in self._lanes:
            smtp, lane.smtp = lane.smtp, None
            if smtp is None:
                continue
            try:
                if smtp.is_connected and smtp.loop is asyncio.get_running_loop():
                    await smtp.quit()
            except (SMTPException, OSError):
                pass  # the server went first; nothing left to release but the socket
            finally:
                with contextlib.suppress(RuntimeError):  # made on a loop now closed
                    smtp.close()

    def _free_lanes(self) -> asyncio.LifoQueue[_Lane]:
        """The lanes not lending their connection now, for this event loop."""
        loop = asyncio.get_running_loop()
        if self._free is None or self._free_loop is not loop:
            self._free, self._free_loop = asyncio.LifoQueue(), loop
            for lane in self._lanes:
                self._free.put_nowait(lane)
        return self._free

    def _build(self, message: Message) -> tuple[str, bytes | EmailMessage]:
        """The Message-ID (without <>) and the message: its bytes, or an
        ``EmailMessage`` when an address needs SMTPUTF8."""
        recipients = [_address(addr) for addr in message.to]
        if not (self._ascii_from and all(r.addr_spec.isascii() for r in recipients)):
            mail = self._build_message(message)
            return str(mail["Message-ID"]).strip("<>"), mail
        # The display name belongs to the account holder: the first address.
        first = recipients[0]
        recipients[0] = Address(message.name or "", first.username, first.domain)
        message_id = email.utils.make_msgid(
            idstring=f"d{message.delivery_id}", domain=self.message_id_domain
        )
        head = [
            b"" if message.subject is None else _subject_line(message.subject),
            self._from_line,
            _to_line(recipients),
            self._reply_to_line,
            f"Date: {email.utils.format_datetime(datetime.now(UTC))}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"X-Notifier-Delivery: {message.delivery_id}\r\n"
            "Auto-Submitted: auto-generated\r\n".encode("ascii"),
        ]
        plain_head, plain = _text_part(message.body, "plain")
        if message.html is None:
            head += [plain_head, b"MIME-Version: 1.0\r\n\r\n", plain]
            return message_id.strip("<>"), b"".join(head)
        html_head, html = _text_part(message.html, "html")
        # "=_" occurs in no base64 or quoted-printable text, and a 7-bit part
        # holding these 128 random bits is not a risk worth a scan.
        boundary = f"=_{random.getrandbits(128):032x}".encode("ascii")
        head += [
            b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="',
            boundary,
            b'"\r\n\r\n--',
            boundary,
            _CRLF,
            plain_head,
            _CRLF,
            plain,
            b"\r\n--",
            boundary,
            _CRLF,
            html_head,
            _CRLF,
            html,
            b"\r\n--",
            boundary,
            b"--\r\n",
        ]
        return message_id.strip("<>"), b"".join(head)

    def _build_message(self, message: Message) -> EmailMessage:
        """The message as ``email.message`` builds it: for SMTPUTF8, and the
        reference the bytes of :meth:`_build` are tested against."""
        mail = EmailMessage(policy=_POLICY)
        if message.subject is not None:
            mail["Subject"] = message.subject
        mail["From"] = self._from
        recipients = [_address(addr) for addr in message.to]
        # The display name belongs to the account holder: the first address.
        recipients[0] = _address(recipients[0].addr_spec, message.name or "")
        mail["To"] = recipients
        if self._reply_to is not None:
            mail["Reply-To"] = self._reply_to
        mail["Date"] = datetime.now(UTC)
        mail["Message-ID"] = email.utils.make_msgid(
            idstring=f"d{message.delivery_id}", domain=self.message_id_domain
        )
        mail["X-Notifier-Delivery"] = str(message.delivery_id)
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(message.body)
        if message.html is not None:
            mail.add_alternative(message.html, subtype="html")
        return mail

    async def _send_with_one_reconnect(
        self, lane: _Lane, mail: bytes | EmailMessage, sender: str, to: tuple[str, ...]
    ) -> tuple[dict[str, SMTPResponse], str]:
        recipients = [a.strip() for a in to]
        for attempt in (1, 2):
            smtp, reused = await self._connection(lane)
            try:
                if isinstance(mail, bytes):
                    return await smtp.sendmail(sender, recipients, mail)
                return await smtp.send_message(mail, sender=sender, recipients=recipients)
            except BaseException as exc:
                if _still_in_step(exc):
                    raise
                # Closed by the server, cancelled, timed out or garbled: start afresh.
                lane.discard()
                if reused and attempt == 1 and _closed_by_server(exc):
                    continue  # most likely an idle connection the server let go: once more
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connection(self, lane: _Lane) -> tuple[aiosmtplib.SMTP, bool]:
        """The lane's open connection and True, or a new one and False."""
        if lane.smtp is not None and lane.smtp.loop is not asyncio.get_running_loop():
            # Made on another event loop (likely closed): unusable, and closable only there.
            with contextlib.suppress(RuntimeError):
                lane.smtp.close()
            lane.smtp = None
        if lane.smtp is not None and lane.smtp.is_connected:
            return lane.smtp, True
        lane.discard()
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username or None,
            password=self._password if self.username else None,
            use_tls=self.use_tls,
            start_tls=self.starttls,
            timeout=self.timeout,
            tls_context=self._tls_context,
            local_hostname=self.ehlo_name,
        )
        await smtp.connect()  # connect, EHLO, STARTTLS, AUTH; closes itself on failure
        lane.smtp = smtp
        return smtp, False


class _Lane:
    """One connection slot: its ``aiosmtplib.SMTP`` once opened, used by one send at a time."""

    __slots__ = ("smtp",)

    def __init__(self) -> None:
        self.smtp: aiosmtplib.SMTP | None = None

    def discard(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            smtp.close()


def _still_in_step(exc: BaseException) -> bool:
    """A refusal after which aiosmtplib's RSET leaves the connection usable."""
    if isinstance(exc, SMTPRecipientsRefused | SMTPNotSupported | ValueError):
        return True
    return (
        isinstance(exc, SMTPResponseException)
        and exc.code != _SERVICE_CLOSING
        and 400 <= exc.code < 600
    )


def _closed_by_server(exc: BaseException) -> bool:
    return isinstance(exc, SMTPServerDisconnected) or (
        isinstance(exc, SMTPResponseException) and exc.code == _SERVICE_CLOSING
    )


# RFC 4954 §6: 535 authentication credentials invalid, 530 authentication required.
_OUR_LOGIN = frozenset({530, 535})


def _map_error(exc: BaseException, to: tuple[str, ...]) -> ChannelError:
    """Our error for an aiosmtplib (or socket) error."""
    if isinstance(exc, SMTPRecipientsRefused):
        return _recipients_refused(exc)
    if isinstance(exc, SMTPResponseException):
        return _reply_error(exc, to)
    if isinstance(exc, SMTPConnectError):
        return TransientChannelError(f"smtp: cannot connect: {exc}", code="connect")
    if isinstance(exc, SMTPTimeoutError | TimeoutError):
        return TransientChannelError(f"smtp: timed out: {exc}", code="timeout")
    if isinstance(exc, SMTPServerDisconnected):
        return TransientChannelError(f"smtp: server disconnected: {exc}", code="disconnected")
    if isinstance(exc, OSError):
        return TransientChannelError(f"smtp: network error: {exc}", code="network")
    if isinstance(exc, SMTPException):
        # STARTTLS or AUTH not offered, SMTPUTF8 needed and missing: nothing a retry fixes.
        return PermanentChannelError(
            f"smtp: server cannot take this (check the SMTP settings): {exc}", code="unsupported"
        )
    # ValueError: aiosmtplib refused an address it cannot put on a command line.
    return PermanentChannelError(
        f"smtp: invalid address: {exc}", code="invalid_address", rejected=to
    )


def _reply_error(exc: SMTPResponseException, to: tuple[str, ...]) -> ChannelError:
    reply = f"{exc.code} {exc.message}"
    if 400 <= exc.code < 500:
        return TransientChannelError(f"smtp: deferred: {reply}", code=str(exc.code))
    if not 500 <= exc.code < 600:
        # A malformed or unexpected reply (aiosmtplib uses -1): the session is suspect.
        return TransientChannelError(f"smtp: unexpected reply: {reply}", code=str(exc.code))
    if exc.code in _OUR_LOGIN:
        # Our username or password (or no login at all), never the recipient's address.
        return ProviderChannelError(
            f"smtp: login refused (check the SMTP username and password): {reply}",
            code=str(exc.code),
        )
    if isinstance(exc, SMTPAuthenticationError):
        return PermanentChannelError(
            f"smtp: login refused, a configuration error (check the SMTP username and password): {reply}",
            code=str(exc.code),
        )
    if isinstance(exc, SMTPRecipientRefused | SMTPDataError):
        return PermanentChannelError(f"smtp: refused: {reply}", code=str(exc.code), rejected=to)
    # MAIL FROM, EHLO or the banner: our side or the server's, not the recipient's.
    return PermanentChannelError(
        f"smtp: server refused the session (check the SMTP settings): {reply}",
        code=str(exc.code),
    )


def _recipients_refused(exc: SMTPRecipientsRefused) -> ChannelError:
    refusals = exc.recipients
    ours = [r for r in refusals if r.code in _OUR_LOGIN]
    if ours:
        return ProviderChannelError(
            f"smtp: login required (check the SMTP username and password): "
            f"{ours[0].code} {ours[0].message}",
            code=str(ours[0].code),
        )
    deferred = [r for r in refusals if not 500 <= r.code < 600]
    if deferred:
        # A retry may get through for these, so the whole send is retried.
        first = deferred[0]
        return TransientChannelError(
            f"smtp: recipient deferred: {first.code} {first.message}", code=str(first.code)
        )
    first = refusals[0]
    return PermanentChannelError(
        f"smtp: recipient refused: {first.code} {first.message}",
        code=str(first.code),
        rejected=tuple(r.recipient for r in refusals),
    )
