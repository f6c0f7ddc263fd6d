"""Request dependencies: the runtime, a database session, the caller's key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from notifier.api.limits import throttle
from notifier.auth import keys
from notifier.auth.models import ApiKey
from notifier.runtime import Runtime

__all__ = ["UNMASKED_ROLES", "CallerDep", "OpsDep", "RuntimeDep", "SessionDep", "require"]

_bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    with rt.db.session() as session:
        yield session


# "function" scope: the commit happens before the response goes out, so a
# failed commit is a 500 rather than a success the database never saw, and a
# page redirected to after a POST reads what that POST wrote.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_caller(
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # A short session of its own, so a rejected key never opens the request's transaction.
    with rt.db.session() as session:
        key = keys.verify(session, credentials.credentials)
        if key is not None:
            keys.touch(session, key)  # last_used_at, at most once a minute
            throttle(rt, key, session)  # 429 once the key is over its role's rate
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown, revoked or expired key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


CallerDep = Annotated[ApiKey, Depends(get_caller)]


def require(*roles: keys.Role) -> Callable[[ApiKey], ApiKey]:
    """A dependency admitting keys of ``roles`` (and admins), as ``notifier.auth.access`` says."""
    allowed = {*roles, "admin"}

    def check(caller: CallerDep) -> ApiKey:
        if caller.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {caller.role} key may not do this; needs {' or '.join(sorted(allowed))}",
            )
        return caller

    return check


OpsDep = Annotated[ApiKey, Depends(require("ops", "supervisor"))]
"""A key that may read the delivery log and preview notices."""
UNMASKED_ROLES = frozenset({"supervisor", "admin"})
"""Roles that may see personal data unmasked (each view audited)."""
