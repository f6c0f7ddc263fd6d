"""The process's wiring: settings, database, policy, templates, channels, broker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

import channels
from channels import Channel
from notifier.celery_config import make_celery
from notifier.db import Database, utcnow
from notifier.dispatch import Dispatcher
from notifier.policy import Policy, load_policy
from notifier.rendering import Renderer
from notifier.settings import Settings

__all__ = ["Runtime"]

T = TypeVar("T")


class Runtime:
    """Everything a request or a task needs, built once per process."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.resolved_database_url)
        self._channels: dict[str, Channel] = {}
        self._lock = threading.Lock()
        self._loops = threading.local()

    @cached_property
    def policy(self) -> Policy:
        return load_policy(
            self.settings.policy_file, quiet_hours_override=self.settings.quiet_hours
        )

    @cached_property
    def renderer(self) -> Renderer:
        return Renderer(self.settings.templates_dir, minguo_dates=self.settings.minguo_dates)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        return Dispatcher(make_celery(self.settings))

    def has_template(self, event_type: str) -> Callable[[str], bool]:
        """A predicate: does ``event_type`` have a template for a channel?"""
        return lambda channel: self.renderer.available(event_type, channel)

    def channel(self, name: str) -> Channel:
        """The configured provider for channel ``name`` (sandbox until credentials are set)."""
        with self._lock:
            if name not in self._channels:
                self._channels[name] = channels.create(
                    name, "sandbox", outbox_dir=self.settings.sandbox_dir
                )
            return self._channels[name]

    def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this thread's own event loop, kept between calls."""
        runner: asyncio.Runner | None = getattr(self._loops, "runner", None)
        if runner is None:
            runner = asyncio.Runner()
            self._loops.runner = runner
        return runner.run(coro)

    def close(self) -> None:
        self.db.dispose()
