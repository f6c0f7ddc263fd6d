"""What a delivery step left behind, for the task that ran it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeliverOutcome"]


@dataclass(frozen=True, slots=True)
class DeliverOutcome:
    status: str | None
    """The status the delivery was left in; None if it was not ours to send."""
    retry_in: float | None = None
    """Send again after this many seconds (a transient error, a busy line)."""
    channel: str | None = None
    """The delivery's channel, where a caller other than its task must re-enqueue it."""
    enqueue: tuple[tuple[int, str], ...] = ()
    """Deliveries created on the way (fallbacks) to enqueue after commit."""
