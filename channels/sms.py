"""SMS sizing, which every SMS provider bills by: how many parts a text takes."""

from __future__ import annotations

__all__ = ["sms_segments"]

# GSM 03.38 basic set (one septet each) and its extension table (escape + one septet).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """How many SMS parts ``text`` takes: GSM-7 160/153 septets, else UCS-2 70/67 units (empty: 1)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text):
        sizes = [2 if ch in _GSM_EXTENDED else 1 for ch in text]
        single, part = 160, 153
    else:
        sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]  # UTF-16 code units
        single, part = 70, 67
    if sum(sizes) <= single:
        return 1
    # Multipart: an escape pair or a surrogate pair never straddles two parts.
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts
