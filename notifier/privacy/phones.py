"""Phone numbers parsed once: one event's number is read by the schema, the lookup hash,
the routing (can it take SMS?) and the masked address of each delivery.

``phonenumbers.parse`` was a tenth of the events worker's CPU, four times for the same
number; the parsed value is kept, immutable, for the next reader.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

__all__ = ["parse"]

_CACHED = 4096
"""Numbers kept: a worker's chunk of events and their deliveries' several times over, and
a few MB at most; an account's number seen again later is parsed again, which is fine."""


def parse(text: str, region: str | None) -> phonenumbers.PhoneNumber:
    """``phonenumbers.parse(text, region)``: the same number (frozen), or the same exception."""
    if region is not None and text.startswith("+"):
        # The schema reads a number with Taiwan as its region, the others read its E.164
        # form with none. Read with none, a "+" number names its own country, and then
        # phonenumbers never looks at the region: one number, one entry for both. Only a
        # "+" before no known country code is read otherwise with a region (as national).
        try:
            return _parse(text, None)
        except phonenumbers.NumberParseException:
            pass
    return _parse(text, region)


@lru_cache(maxsize=_CACHED)
def _parse(text: str, region: str | None) -> phonenumbers.FrozenPhoneNumber:
    # Frozen, since every caller gets this one object: nobody can change it for the others.
    # A NumberParseException is not cached (lru_cache keeps only returned values): a bad
    # number is parsed, and refused, each time, as before.
    return phonenumbers.FrozenPhoneNumber(phonenumbers.parse(text, region))
