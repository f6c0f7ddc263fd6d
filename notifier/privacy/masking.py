"""Personal data as logs, listings and errors may show it."""

from __future__ import annotations

import re

import phonenumbers

from notifier.privacy import phones

__all__ = [
    "mask_account_no",
    "mask_address",
    "mask_email",
    "mask_phone",
    "mask_recipient",
    "redact_echo",
]

# Taiwanese addresses read county/city → district/township → street; keep up
# to the district, which places a customer without finding their door.
_DISTRICT = re.compile(r"^(.*?(?:市|縣).*?(?:區|鄉|鎮|市))")
_ECHO_MIN = 4
"""Shorter pieces of a value ("@", ".com") are taken out of no message: they name nobody."""
_SEPARATORS = re.compile(r"[\s@,;:<>()\[\]\"']+")
_EMAIL_LIKE = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_LIKE = re.compile(r"(?<![\w+])(?:\+\d|\(?0\d)(?:[ ()-]{0,2}\d){6,}")
"""E.164 or a national number (a leading 0), as a refused phone may be quoted; not 2147483647."""


def mask_phone(e164: str) -> str:
    """``+886912345678`` → ``+886 912 ***678``."""
    try:
        number = phones.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "***"
    national = phonenumbers.national_significant_number(number)
    head, tail = national[:3], national[-3:]
    return f"+{number.country_code} {head} ***{tail}"


def mask_email(address: str) -> str:
    """``alice@example.com`` → ``a***@example.com``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_address(address: str) -> str:
    """Cut an address to its district: ``苗栗縣頭份市中正路1號`` → ``苗栗縣頭份市…``."""
    match = _DISTRICT.match(address)
    if match:
        return match.group(1) + "…"
    words = address.split(",")
    return (words[-1].strip() + " …") if len(words) > 1 else address[:6] + "…"


def mask_account_no(account_no: str) -> str:
    """``01234567890`` → ``012****7890``."""
    return account_no[:3] + "*" * max(len(account_no) - 7, 0) + account_no[-4:]


def mask_recipient(channel: str, recipient: str) -> str:
    """Mask one recipient the way its channel calls for."""
    if channel in {"sms", "voice"}:
        return mask_phone(recipient)
    if channel == "email":
        return mask_email(recipient)
    if channel == "postcard":
        return mask_address(recipient)
    return recipient[:6] + "…"


def redact_echo(message: str, sent: object) -> str:
    """``message`` without ``sent`` (or its parts) in it, and any phone or email masked.

    For error messages: a validator may quote the value it refused ("the
    domain name example.com ..."), and a 422 answer or a log line must never
    echo a phone number, email or address a producer sent.
    """
    if isinstance(sent, str) and sent:
        pieces = {sent.strip(), *_SEPARATORS.split(sent)}
        for piece in sorted(pieces, key=len, reverse=True):
            if len(piece) >= _ECHO_MIN and piece in message:
                message = message.replace(piece, "***")
    message = _EMAIL_LIKE.sub(lambda m: mask_email(m.group()), message)
    return _PHONE_LIKE.sub("***", message)
