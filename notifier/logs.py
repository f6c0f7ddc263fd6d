"""Logging set-up shared by the API, the worker and the CLI."""

from __future__ import annotations

import logging
import os

__all__ = ["configure_logging"]


def configure_logging(level: str | None = None) -> None:
    """Plain one-line logs to stderr; ``NOTIFIER_LOG_LEVEL`` sets the level."""
    root = logging.getLogger()
    if getattr(root, "_notifier_configured", False):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("NOTIFIER_LOG_LEVEL", "INFO"))
    root._notifier_configured = True  # type: ignore[attr-defined]
