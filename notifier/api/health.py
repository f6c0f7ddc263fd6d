"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from notifier.api.deps import RuntimeDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(rt: RuntimeDep, response: Response) -> dict[str, str]:
    """Database and broker answer. Without a broker, events are still accepted: degraded."""
    checks: dict[str, str] = {}
    try:
        rt.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        rt.dispatcher.ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"down: {type(exc).__name__}"
    if checks["database"] != "ok":
        checks["status"] = "down"
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    else:
        checks["status"] = "ok" if checks["broker"] == "ok" else "degraded"
    return checks
