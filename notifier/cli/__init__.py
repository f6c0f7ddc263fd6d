"""The ``notifier`` command, one module per command group.

``main`` holds the top-level commands (run the service, migrate, keys,
postcards, reconcile, purge) and mounts the groups kept beside it:
``escalation`` (the sweep, agents, call and visit lists), ``ingest`` (the bus
consumer, event files, the dead-letter queue), ``users`` and ``audit``. A CLI
is a way in, like ``api/`` and ``web/``: it may import the wiring (settings,
db, runtime, models), the flows and every domain; nothing imports it but
``notifier.__main__`` and the ``notifier`` script.
"""

from __future__ import annotations

from notifier.cli.main import app

__all__ = ["app"]
