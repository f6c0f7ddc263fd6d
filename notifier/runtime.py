"""The process's wiring: settings, database, policy, templates, channels, broker."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

import channels
import notifier.models  # noqa: F401  (every table: foreign keys span domains)
from channels import Channel
from notifier.db import Database, utcnow
from notifier.notices.rendering import Renderer
from notifier.policy.rules import Policy, load_policy
from notifier.providers.circuits import Circuits, make_circuits
from notifier.providers.ratelimit import RateLimiter, make_rate_limiter
from notifier.providers.selection import provider_chain, provider_for, provider_options
from notifier.queues.celery_config import make_celery
from notifier.queues.dispatch import Dispatcher
from notifier.settings import Settings
from notifier.webhooks import service as webhooks

__all__ = ["Runtime"]

T = TypeVar("T")


class Runtime:
    """Everything a request or a task needs, built once per process."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.resolved_database_url)
        self._loops = threading.local()
        # Producer callbacks written in this database's transactions go out once they commit.
        webhooks.publish_after_commit(self.db.engine, self._publish_callbacks)

    @cached_property
    def policy(self) -> Policy:
        return load_policy(
            self.settings.policy_file, quiet_hours_override=self.settings.quiet_hours
        )

    @cached_property
    def renderer(self) -> Renderer:
        return Renderer(self.settings.templates_dir, minguo_dates=self.settings.minguo_dates)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        return make_rate_limiter(
            self.db,
            redis_url=self.settings.rate_limit_url,
            broker_url=self.settings.resolved_broker_url,
        )

    @cached_property
    def circuits(self) -> Circuits:
        return make_circuits(
            self.db,
            redis_url=self.settings.rate_limit_url,
            broker_url=self.settings.resolved_broker_url,
        )

    @cached_property
    def dispatcher(self) -> Dispatcher:
        return Dispatcher(make_celery(self.settings))

    def _publish_callbacks(self, callback_ids: list[int]) -> None:
        self.dispatcher.producer_callbacks(callback_ids)

    def has_template(self, event_type: str) -> Callable[[str], bool]:
        """A predicate: does ``event_type`` have a template for a channel?"""
        return lambda channel: self.renderer.available(event_type, channel)

    def provider(self, channel: str) -> str:
        """The provider ``channel`` uses first (see notifier.providers.selection)."""
        return provider_for(self.settings, channel)

    def providers(self, channel: str) -> list[tuple[str, int]]:
        """Every provider of ``channel``, in order, with its weight (0: a standby)."""
        return provider_chain(self.settings, channel)

    def channel(self, name: str, provider: str | None = None) -> Channel:
        """This thread's instance of one of the channel's providers (None: the first).

        One per thread: async clients (aiohttp sessions, an SMTP connection)
        belong to the event loop of the thread that made them.
        """
        mine: dict[tuple[str, str], Channel] | None = getattr(self._loops, "channels", None)
        if mine is None:
            mine = self._loops.channels = {}
        provider = provider or self.provider(name)
        if (name, provider) not in mine:
            mine[name, provider] = channels.create(
                name, provider, **provider_options(self.settings, name, provider)
            )
        return mine[name, provider]

    def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this thread's own event loop, kept between calls."""
        runner: asyncio.Runner | None = getattr(self._loops, "runner", None)
        if runner is None:
            runner = asyncio.Runner()
            self._loops.runner = runner
        return runner.run(coro)

    def close(self) -> None:
        """Close this thread's channels and loop, and the database pool."""
        mine: dict[tuple[str, str], Channel] = getattr(self._loops, "channels", {})
        for channel in mine.values():
            with contextlib.suppress(Exception):  # best effort: the process is ending
                self.run_async(channel.aclose())
        mine.clear()
        runner: asyncio.Runner | None = getattr(self._loops, "runner", None)
        if runner is not None:
            runner.close()
            self._loops.runner = None
        self.db.dispose()
