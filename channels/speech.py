"""Voice scripts: plain text with one SSML mark, a number to be read as a number.

A four-digit amount before "dollars" can come out of a text-to-speech voice as a
year ("eighteen thirty dollars"), and a bare number's reading differs from voice to
voice. A voice template therefore marks each amount with ``{{ amount|cardinal }}``,
which renders ``<say-as interpret-as="cardinal">1830</say-as>``. Voices that read
SSML inside ``<Say>`` (Twilio's ``Polly.*`` and ``Google.*`` voices) get the mark as
an element; the basic voices (``man``, ``woman``, ``alice``) and every page that
shows a script get :func:`plain` text, the number grouped ("1,830"), which those
voices and people read as a number too.

Only that exact mark is markup. Anything else in a script, a name with ``<`` in it
included, stays text and is escaped by the TwiML builder.

Vendor pages: https://www.twilio.com/docs/voice/twiml/say/text-speech#ssml-tags
(``<say-as interpret-as="cardinal">``), Amazon Polly's supported tags
https://docs.aws.amazon.com/polly/latest/dg/supportedtags.html.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["SayAs", "cardinal", "parts", "plain", "reads_ssml"]

_MARK = re.compile(r'<say-as interpret-as="cardinal">(-?\d{1,15})</say-as>')
_SSML_VOICES = ("Polly.", "Google.")


@dataclass(frozen=True, slots=True)
class SayAs:
    """A part of a script the voice reads as ``interpret_as`` says."""

    text: str
    interpret_as: str = "cardinal"


def cardinal(value: int | float | Decimal | str) -> str:
    """A whole amount marked to be read as a number: 1830 -> the cardinal mark of 1830."""
    amount = int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return f'<say-as interpret-as="cardinal">{amount}</say-as>'


def parts(script: str) -> list[str | SayAs]:
    """The script as text and marks, in order; no empty text between two marks."""
    found: list[str | SayAs] = []
    end = 0
    for match in _MARK.finditer(script):
        if match.start() > end:
            found.append(script[end : match.start()])
        found.append(SayAs(match[1]))
        end = match.end()
    if end < len(script):
        found.append(script[end:])
    return found


def plain(script: str) -> str:
    """The script as people and basic voices read it: each marked number grouped."""
    return _MARK.sub(lambda match: f"{int(match[1]):,}", script)


def reads_ssml(voice: str) -> bool:
    """Whether Twilio passes SSML inside ``<Say>`` to this voice."""
    return voice.startswith(_SSML_VOICES)
