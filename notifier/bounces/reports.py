"""Delivery status notifications (RFC 3464) and complaint reports (RFC 5965) as plain values.

Both are ``multipart/report`` (RFC 6522): a human-readable part, a
machine-readable part, and the original message or its headers. The
``report-type`` parameter says which:

* ``delivery-status``: the second part is ``message/delivery-status``, which
  the standard library's parser splits into its blocks (a list of header
  blocks: the per-message fields, then one block per recipient with
  ``Final-Recipient``, ``Action`` and ``Status``). ``Action: failed`` with a
  ``5.x.x`` status is a hard bounce; ``delayed`` (or any ``4.x.x``) is the
  remote MTA telling us it keeps trying.
  https://www.rfc-editor.org/rfc/rfc3464#section-2.3 ,
  https://www.rfc-editor.org/rfc/rfc3463
* ``feedback-report``: the second part is ``message/feedback-report``
  (``Feedback-Type: abuse`` when the customer pressed "this is spam").
  https://www.rfc-editor.org/rfc/rfc5965#section-3.1

The original message's ``Message-ID`` is read from the third part
(``message/rfc822`` or ``text/rfc822-headers``): it names the delivery when
the bounce address lost its token. Everything else in a report is written
by a remote party and is only recorded, never trusted to name a delivery.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser, HeaderParser
from typing import Literal

__all__ = ["NotAReport", "RecipientStatus", "Report", "parse"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
_DIAGNOSTIC_MAX = 300


class NotAReport(ValueError):
    """Mail that is no ``multipart/report`` we read: a reply, spam, a bounce in prose."""


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What a DSN says of one recipient (RFC 3464 §2.3)."""

    recipient: str
    """The address, from ``Original-Recipient`` or else ``Final-Recipient``."""
    action: str
    """``failed``, ``delayed``, ``delivered``, ``relayed`` or ``expanded``."""
    status: str
    """The enhanced status code, ``5.1.1``."""
    diagnostic: str = ""
    """The remote server's reply, as the reporting MTA quotes it (shortened)."""

    @property
    def hard(self) -> bool:
        """The address will never take mail: the MTA gave up with a permanent status."""
        return self.action == "failed" and self.status.startswith("5.")

    @property
    def final(self) -> bool:
        """The MTA gave up (its retry time ran out on a ``4.x.x`` too): not delivered."""
        return self.action == "failed"


@dataclass(frozen=True, slots=True)
class Report:
    """One report, with what it says of each recipient."""

    kind: Literal["dsn", "complaint"]
    report_id: str
    """The report's own Message-ID, else a digest of its bytes: the same report twice
    has the same id."""
    reporting_mta: str
    original_message_id: str | None
    """The Message-ID of the email it is about, without ``<>``, if the report returned it."""
    recipients: tuple[RecipientStatus, ...] = ()
    feedback_type: str | None = None
    """A complaint's ``Feedback-Type`` (``abuse``, ``fraud``, ``not-spam``, …)."""


def parse(raw: bytes) -> Report:
    """The report in ``raw`` (the bytes received in DATA); :class:`NotAReport` otherwise."""
    message = BytesParser(policy=email.policy.compat32).parsebytes(raw)
    if message.get_content_type() != "multipart/report":
        raise NotAReport(f"not a multipart/report but {message.get_content_type()}")
    report_type = (message.get_param("report-type") or "").__str__().lower()
    parts = _messages(message.get_payload())
    if len(parts) < 2:
        raise NotAReport("a multipart/report without its machine-readable part")
    report_id = _message_id(message.get("Message-ID")) or hashlib.sha256(raw).hexdigest()[:32]
    original = _original_message_id(parts[2:])
    if report_type == "delivery-status":
        return _dsn(parts[1], report_id=report_id, original=original)
    if report_type == "feedback-report":
        return _complaint(parts[1], report_id=report_id, original=original)
    raise NotAReport(f"report-type {report_type!r} is neither delivery-status nor feedback-report")


def _dsn(part: Message, *, report_id: str, original: str | None) -> Report:
    if part.get_content_type() != "message/delivery-status":
        raise NotAReport(f"a delivery-status report whose second part is {part.get_content_type()}")
    blocks = _messages(part.get_payload())
    if not blocks:
        raise NotAReport("an empty message/delivery-status part")
    per_message = blocks[0]
    recipients = tuple(status for block in blocks[1:] if (status := _recipient(block)) is not None)
    if not recipients:
        raise NotAReport("a delivery-status report naming no recipient")
    return Report(
        kind="dsn",
        report_id=report_id,
        reporting_mta=_typed_value(per_message.get("Reporting-MTA")),
        original_message_id=original,
        recipients=recipients,
    )


def _recipient(block: Message) -> RecipientStatus | None:
    address = _typed_value(block.get("Original-Recipient")) or _typed_value(
        block.get("Final-Recipient")
    )
    action = _field(block.get("Action")).lower().split(" ")[0]
    if not address or action not in _ACTIONS:
        return None
    diagnostic = _field(block.get("Diagnostic-Code"))
    found = _STATUS.search(_field(block.get("Status"))) or _STATUS.search(diagnostic)
    if found is None:
        # No code at all: the action alone says how final it is.
        status = "5.0.0" if action == "failed" else "4.0.0" if action == "delayed" else "2.0.0"
    else:
        status = ".".join(found.groups())
    if ";" in diagnostic:
        diagnostic = diagnostic.split(";", 1)[1].strip()  # drop the "smtp;" type
    return RecipientStatus(
        recipient=address,
        action=action,
        status=status,
        diagnostic=diagnostic[:_DIAGNOSTIC_MAX],
    )


def _complaint(part: Message, *, report_id: str, original: str | None) -> Report:
    if part.get_content_type() != "message/feedback-report":
        raise NotAReport(f"a feedback report whose second part is {part.get_content_type()}")
    fields = _fields_of(part)
    feedback_type = _field(fields.get("Feedback-Type")).lower()
    if not feedback_type:
        raise NotAReport("a feedback report without Feedback-Type")
    recipient = _field(fields.get("Original-Rcpt-To")).strip("<>")
    return Report(
        kind="complaint",
        report_id=report_id,
        reporting_mta=_field(fields.get("Reporting-MTA")) or _field(fields.get("User-Agent")),
        original_message_id=original,
        recipients=(
            (RecipientStatus(recipient=recipient, action="complained", status="2.0.0"),)
            if recipient
            else ()
        ),
        feedback_type=feedback_type,
    )


def _messages(payload: object) -> list[Message]:
    """The parts (or header blocks) of a multipart or ``message/*`` payload; [] for text."""
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _fields_of(part: Message) -> Message:
    """The header block of a ``message/*`` part, however the parser took it."""
    payload = part.get_payload()
    if blocks := _messages(payload):
        return blocks[0]
    text = payload if isinstance(payload, str) else ""
    return HeaderParser(policy=email.policy.compat32).parsestr(text.lstrip("\r\n"))


def _original_message_id(parts: Sequence[Message]) -> str | None:
    """The Message-ID of the returned message (or of its returned headers)."""
    for part in parts:
        content_type = part.get_content_type()
        if content_type in {"message/rfc822", "message/global", "text/rfc822-headers"}:
            found = _message_id(_fields_of(part).get("Message-ID"))
            if found:
                return found
    return None


def _field(value: object) -> str:
    """A header's value unfolded and stripped; empty for a missing one."""
    if value is None:
        return ""
    return " ".join(str(value).split())


def _typed_value(value: object) -> str:
    """``rfc822; a@example.com`` → ``a@example.com`` (the address-type before the ``;``)."""
    text = _field(value)
    return text.split(";", 1)[1].strip().strip("<>") if ";" in text else text.strip("<>")


def _message_id(value: object) -> str | None:
    text = _field(value).strip()
    return text.strip("<>") or None
