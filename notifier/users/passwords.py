"""The password rule of local accounts: long enough, not common, not guessable.

A password is refused when it has fewer than ``MIN_LENGTH`` characters, is
only blanks, is one of the 30,000 most common passwords (the list zxcvbn
ships, from the Xato corpus; MIT licence, as zxcvbn), or when zxcvbn's
estimate scores it below ``MIN_SCORE`` (0-4: 3 is "safely unguessable:
moderate protection from an offline attack"), the username and display name
counting as guessable words. The reason names what to change, never the
password.
"""

from __future__ import annotations

from functools import cache

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "MIN_SCORE", "problem"]

MIN_LENGTH = 10
MAX_LENGTH = 1024
MIN_SCORE = 3
# zxcvbn's cost grows with the length; past this the rest adds no guessability.
_ESTIMATED_PREFIX = 100


@cache
def _common() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"])


def problem(password: str, *, user_inputs: tuple[str, ...] = ()) -> str | None:
    """Why ``password`` may not be used (a sentence for the person), or None if it may."""
    if len(password) < MIN_LENGTH:
        return f"use at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"use at most {MAX_LENGTH} characters"
    if not password.strip():
        return "use more than blanks"
    if password.lower() in _common() or password.strip().lower() in _common():
        return "this is one of the most common passwords; choose another"
    inputs = [word for word in user_inputs if word]
    estimate = zxcvbn(password[:_ESTIMATED_PREFIX], user_inputs=inputs)
    if int(estimate["score"]) < MIN_SCORE:
        warning = str(estimate["feedback"].get("warning") or "").strip()
        hint = f" ({warning.rstrip('.')})" if warning else ""
        return (
            f"too easy to guess{hint}; use a longer phrase of unrelated words, "
            "or add unusual words or symbols"
        )
    return None
