"""``GET /metrics``: Prometheus text format, for a scraper with a static bearer token.

Open in the embedded mode while ``NOTIFIER_METRICS_TOKEN`` is empty; deployed, a
token is needed (without one set, ``/metrics`` answers 403 saying so: queue depths,
case counts and provider errors are not for anyone who can reach the port).
The request carries ``Authorization: Bearer <NOTIFIER_METRICS_TOKEN>``. API keys
are not accepted: a scraper's token should open nothing else.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from notifier.api.deps import RuntimeDep
from notifier.flows.deliver import REPORTING_PROVIDERS
from notifier.observability.metrics import DatabaseCollector
from notifier.queues.celery_config import ALL_QUEUES
from notifier.runtime import Runtime

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["metrics"])
_bearer = HTTPBearer(auto_error=False)
_registry_lock = threading.Lock()


def _scraper(
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected = rt.settings.metrics_token.get_secret_value()
    if not expected and rt.settings.mode == "deployed":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "set NOTIFIER_METRICS_TOKEN: deployed, /metrics needs a scraper's token",
        )
    if not expected:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong Authorization: Bearer <NOTIFIER_METRICS_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _registry(request: Request, rt: Runtime) -> CollectorRegistry:
    """This app's registry: one collector, so its cache is shared by every scrape."""
    with _registry_lock:
        registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
        if registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(
                DatabaseCollector(
                    rt.db,
                    ttl=rt.settings.metrics_cache_seconds,
                    queue_depths=lambda: _queue_depths(rt),
                    circuits=rt.circuits.states,
                    reporting=REPORTING_PROVIDERS,
                    receipt_overdue_seconds=rt.settings.receipt_stall_seconds,
                )
            )
            request.app.state.metrics_registry = registry
        return registry


def _queue_depths(rt: Runtime) -> dict[str, int | None]:
    # The message bus's queues last: on RabbitMQ a queue not declared yet (no
    # `notifier ingest` ran) fails its passive declare and the channel with it.
    # Its dead-letter queue's depth is the count of refused messages waiting.
    ingest = rt.settings.ingest
    same_broker = ingest.broker_url in ("", rt.settings.resolved_broker_url)
    bus_queues = [ingest.queue, ingest.dlq] if same_broker else []
    depths = rt.dispatcher.queue_depths([*ALL_QUEUES, *bus_queues])
    # kombu's Redis transport refuses a passive declare of a queue whose list
    # is gone, and Redis drops an empty list: a broker that answers but knows
    # no such queue has nothing waiting in it.
    if rt.settings.resolved_broker_url.startswith("redis") and None in depths.values():
        try:
            rt.dispatcher.ping()
        except Exception:
            return depths
        return {name: depth or 0 for name, depth in depths.items()}
    return depths


@router.get(
    "/metrics",
    dependencies=[Depends(_scraper)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request, rt: RuntimeDep) -> Response:
    """Deliveries, latencies, retries, provider errors, queue depths and open escalations."""
    try:
        body = generate_latest(_registry(request, rt))
    except Exception as exc:
        # Prometheus records a failed scrape (up == 0); numbers that are not
        # there are better than stale ones.
        log.warning("metrics: cannot read them (%s)", type(exc).__name__, exc_info=True)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "metrics unavailable") from exc
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
