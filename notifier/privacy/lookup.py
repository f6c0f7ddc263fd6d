"""Keyed hashes of phone numbers and emails: what the delivery log searches by.

A phone number has too few digits to hide behind a plain hash (all of Taiwan's
mobiles can be hashed in minutes), so the hash is an HMAC with a key from the
settings (``lookup_key``): the indexed column names nobody to whoever reads the
database without the key. The value is normalised first (phone numbers to
E.164 with ``phonenumbers``, Taiwan as the region of a local number; emails
trimmed and lower-cased), so ``0912-345-678`` finds ``+886912345678``.
"""

from __future__ import annotations

import hashlib
import hmac

import phonenumbers

from notifier.privacy import phones

__all__ = ["email_hash", "normal_email", "normal_phone", "phone_hash", "query_hashes"]


def normal_phone(text: str) -> str | None:
    """``text`` as an E.164 number, or None if it is not a possible phone number."""
    try:
        number = phones.parse(text.strip(), "TW")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normal_email(text: str) -> str | None:
    """``text`` trimmed and lower-cased, or None if it is not an address."""
    value = text.strip().lower()
    local, at, domain = value.partition("@")
    return value if at and local and "." in domain else None


def _keyed(kind: str, value: str, key: bytes) -> str:
    # The kind is hashed in, so a phone's hash never equals an email's.
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def phone_hash(phone: str | None, key: bytes) -> str | None:
    """The lookup hash of a phone number (None for none or one that is not a number)."""
    normal = normal_phone(phone) if phone else None
    return _keyed("phone", normal, key) if normal else None


def email_hash(email: str | None, key: bytes) -> str | None:
    """The lookup hash of an email address (None for none or one that is not an address)."""
    normal = normal_email(email) if email else None
    return _keyed("email", normal, key) if normal else None


def query_hashes(text: str, key: bytes) -> tuple[str | None, str | None]:
    """What a search box's ``text`` may be: ``(phone hash, email hash)``, either None."""
    if "@" in text:
        return None, email_hash(text, key)
    digits = sum(c.isdigit() for c in text)
    return (phone_hash(text, key) if digits >= 8 else None), None
