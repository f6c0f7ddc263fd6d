"""The ASGI entry point for deployed API processes: ``notifier.api.main:app``."""

from __future__ import annotations

from notifier.api.app import create_app

app = create_app()
