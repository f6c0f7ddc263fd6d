"""Deprecated alias of :mod:`notifier.ingest.producer`, the producers' library.

Releases before 0.2 documented ``from notifier.producer import Publisher,
publish`` to the billing side; this keeps that import working for one more
release. New code imports :mod:`notifier.ingest.producer`.
"""

from __future__ import annotations

import warnings

from notifier.ingest.producer import *  # noqa: F403
from notifier.ingest.producer import __all__ as __all__

warnings.warn(
    "notifier.producer moved to notifier.ingest.producer; the old name goes in a later release",
    DeprecationWarning,
    stacklevel=2,
)
