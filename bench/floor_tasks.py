"""The floor of bench/e2e.py: one Celery task per delivery, one blocking provider call each.

bench/e2e.py runs it as ``celery -A bench.floor_tasks worker -Q bench-floor ...``
(prefork, as many processes as the notifier's workers have) on the same
broker, with the settings below in the environment. Each task POSTs one SMS to
the Twilio simulator's Messages endpoint and appends its finish time to a
file, which is how the bench knows when the last one is done without a result
backend (the same on RabbitMQ and Redis).

Celery is configured like the notifier's own worker (late acks, prefetch of
one, no results), so the floor differs from the notifier only in doing no
database work.
"""

from __future__ import annotations

import base64
import os
import time
from urllib.parse import urlencode
from urllib.request import ProxyHandler, Request, build_opener

from celery import Celery
from kombu.entity import Exchange, Queue

QUEUE = "bench-floor"
TASK = "bench.floor.send_sms"

BROKER_ENV = "BENCH_FLOOR_BROKER"
MESSAGES_URL_ENV = "BENCH_FLOOR_MESSAGES_URL"
"""``{twilio base}/2010-04-01/Accounts/{sid}/Messages.json``."""
AUTH_ENV = "BENCH_FLOOR_AUTH"
"""``sid:token``, sent as HTTP basic auth."""
DONE_ENV = "BENCH_FLOOR_DONE"
"""The file each finished task appends ``<epoch seconds> ok|error`` lines to."""

# No proxy: the simulator is local even where http_proxy is set.
_opener = build_opener(ProxyHandler({}))
_done_fd: int | None = None


def make_app(broker_url: str) -> Celery:
    """The floor's Celery app: the worker's, and the bench's to publish with."""
    app = Celery("bench-floor", broker=broker_url)
    app.conf.update(
        task_queues=[Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)],
        task_default_queue=QUEUE,
        task_default_exchange=QUEUE,
        task_default_routing_key=QUEUE,
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app(os.environ.get(BROKER_ENV, "memory://"))


@app.task(name=TASK)
def send_sms(to: str, sender: str, body: str) -> None:
    """One blocking Messages create, as a per-delivery task would make it."""
    request = Request(
        os.environ[MESSAGES_URL_ENV],
        data=urlencode({"To": to, "From": sender, "Body": body}).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(os.environ[AUTH_ENV].encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    ok = False
    try:
        with _opener.open(request, timeout=30) as reply:
            reply.read()
            ok = reply.status == 201
    finally:
        _record_done(ok)


def _record_done(ok: bool) -> None:
    global _done_fd
    if _done_fd is None:  # one descriptor per pool process, opened on its first task
        _done_fd = os.open(os.environ[DONE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # One short O_APPEND write: lines from concurrent processes do not interleave.
    os.write(_done_fd, f"{time.time():.6f} {'ok' if ok else 'error'}\n".encode())
