"""Celery configuration derived from Settings: one queue per channel."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.schedules import crontab
from kombu.entity import Exchange, Queue

from channels import CHANNEL_NAMES
from notifier.policy.rules import load_policy
from notifier.settings import Settings

__all__ = [
    "ALL_QUEUES",
    "EVENTS_QUEUE",
    "FILESYSTEM_TRANSPORT",
    "MAINTENANCE_QUEUE",
    "WEBHOOKS_QUEUE",
    "filesystem_options",
    "make_celery",
]

EVENTS_QUEUE = "events"
MAINTENANCE_QUEUE = "maintenance"
WEBHOOKS_QUEUE = "webhooks"
"""Producer callbacks: a slow producer URL holds up no notice."""
ALL_QUEUES: tuple[str, ...] = (EVENTS_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE, *CHANNEL_NAMES)
FILESYSTEM_TRANSPORT = "notifier.queues.fs_transport:Transport"
"""The embedded broker: kombu's filesystem transport with atomic message files."""


def _config(settings: Settings) -> dict[str, Any]:
    cutoff_hour, cutoff_minute = (int(part) for part in settings.postcard_cutoff.split(":"))
    escalation = load_policy(settings.policy_file).escalation
    config: dict[str, Any] = {
        "broker_url": settings.resolved_broker_url,
        "broker_connection_timeout": settings.publish_timeout_seconds,
        "broker_connection_retry_on_startup": True,
        # Each queue on its own direct exchange and key: a bare Queue(name) would be
        # bound to the default exchange with the default key, so every message
        # would be copied into every queue.
        "task_queues": [
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ALL_QUEUES
        ],
        "task_default_queue": EVENTS_QUEUE,
        "task_routes": {
            "notifier.process_events": {"queue": EVENTS_QUEUE},
            "notifier.reconcile": {"queue": MAINTENANCE_QUEUE},
            "notifier.print_postcards": {"queue": MAINTENANCE_QUEUE},
            "notifier.escalation_sweep": {"queue": MAINTENANCE_QUEUE},
            "notifier.release_hold": {"queue": MAINTENANCE_QUEUE},
            "notifier.leave_voicemail": {"queue": "voice"},  # a live call: no waiting
            "notifier.send_producer_callback": {"queue": WEBHOOKS_QUEUE},
            "notifier.purge": {"queue": MAINTENANCE_QUEUE},
        },
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A batch running when the broker connection drops goes on to record what it
        # sent (its ack is lost, and the redelivered message finds its rows taken).
        # Cancelling it, Celery 6's default, would leave sends out and unrecorded,
        # to be sent again once the lease runs out.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        # Beat answers `celery inspect ping` too, so its healthcheck is the workers' one.
        "beat_enable_remote_control": True,
        "timezone": settings.timezone,
        "beat_schedule": {
            "print-postcards": {
                "task": "notifier.print_postcards",
                "schedule": crontab(hour=cutoff_hour, minute=cutoff_minute),
            },
            # Every day: the task itself asks the business calendar, since crontab knows
            # weekdays only (a holiday Monday is skipped, a make-up Saturday, 補班, swept).
            "escalation-sweep": {
                "task": "notifier.escalation_sweep",
                "schedule": crontab(
                    hour=escalation.sweep_at.hour, minute=escalation.sweep_at.minute
                ),
            },
            # Personal data past NOTIFIER_RETENTION_DAYS, at night (business time).
            "retention-purge": {
                "task": "notifier.purge",
                "schedule": crontab(hour=3, minute=30),
            },
            "reconcile": {
                "task": "notifier.reconcile",
                "schedule": settings.reconcile_interval_seconds,
                "options": {"expires": settings.reconcile_interval_seconds * 2},
            },
        },
    }
    if config["broker_url"].startswith("filesystem"):
        config["broker_transport"] = FILESYSTEM_TRANSPORT
        config["broker_transport_options"] = filesystem_options(settings)
    return config


def filesystem_options(settings: Settings) -> dict[str, Any]:
    """Transport options of the embedded broker folder (created if missing)."""
    folder = settings.broker_dir
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "polling_interval": settings.filesystem_polling_interval,
    }


def make_celery(settings: Settings) -> Celery:
    """A Celery app for these settings (the worker's, or a publisher's)."""
    app = Celery("notifier")
    app.conf.update(_config(settings))
    return app
