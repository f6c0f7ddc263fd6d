"""Text from outside, made safe to store, print and show to people.

Every string of a request body must be storable: no NUL (PostgreSQL text
cannot hold it) and no lone surrogate (not text; it cannot be encoded as
UTF-8). Names and addresses, which people read on pages, exports, printed
notices and postcards, are held to more:

- other control characters are refused (in an address, a line break or a tab
  is taken as a separator and becomes one space);
- bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) are
  refused: they reorder what a reader sees ("U+202E" turns the rest around);
- invisible characters (zero-width space, joiners, LRM/RLM marks, word
  joiner, BOM) are removed: they make equal names compare unequal;
- the result is normalised to NFC, so one name has one spelling.

Bill numbers, reasons and other one-line free text (``FreeText``) are held to the
names' rules; notes (``Note``) too, but keep their line breaks.

Refusals are ``ValueError``s, which pydantic reports as 422 naming the field.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

__all__ = [
    "Address",
    "FreeText",
    "Note",
    "PersonName",
    "StorableStr",
    "clean_address",
    "clean_name",
    "clean_note",
    "storable",
]

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"))
_LINE_BREAKS = re.compile(r"[ \t\r\n\v\f]*[\t\r\n\v\f][ \t\r\n\v\f]*")
_NEWLINES = re.compile(r"\r\n?")


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"


def storable(value: Any) -> Any:
    """Refuse a string that no column can hold (NUL, lone surrogates); pass anything else."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("contains a NUL character (U+0000)")
        if match := _SURROGATE.search(value):
            raise ValueError(f"contains a lone surrogate ({_code(match[0])}), which is not text")
    return value


def _readable(value: str) -> str:
    if match := _CONTROL.search(value):
        raise ValueError(f"contains a control character ({_code(match[0])})")
    if match := _BIDI.search(value):
        raise ValueError(f"contains a bidirectional override ({_code(match[0])})")
    return unicodedata.normalize("NFC", value.translate(_INVISIBLE)).strip()


def clean_name(value: str) -> str:
    """A person's (or an area's) name as people read it; see the module's rules."""
    return _readable(storable(value))


def clean_address(value: str) -> str:
    """An address as people read it; a line break or tab becomes one space."""
    return _readable(_LINE_BREAKS.sub(" ", storable(value)))


def clean_note(value: str) -> str:
    """A note of several lines (an agent's, a hold's): a name's rules, but line breaks kept
    (as ``\n``) and tabs taken as spaces."""
    lines = _NEWLINES.sub("\n", storable(value)).replace("\t", " ").split("\n")
    return "\n".join(_readable(line) for line in lines).strip()


StorableStr = Annotated[str, BeforeValidator(storable)]
PersonName = Annotated[str, BeforeValidator(storable), AfterValidator(clean_name)]
Address = Annotated[str, BeforeValidator(storable), AfterValidator(clean_address)]
FreeText = Annotated[str, BeforeValidator(storable), AfterValidator(clean_name)]
"""One line of free text shown to people (a bill number, a reason): a name's rules."""
Note = Annotated[str, BeforeValidator(storable), AfterValidator(clean_note)]
