"""The Celery app and its thin tasks: each takes ids and calls one flow.

``app`` builds the Celery app from ``queues.celery_config`` and holds every
task (``notifier.deliver_batch``, ``notifier.process_events``, ...; the names
are a contract with queued messages and stay). A way in, like ``api``: it may
import the runtime, the flows, ``escalation``, ``queues`` and
``observability``; nothing but
the wiring imports it.
"""
