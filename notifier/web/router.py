"""Signing in and out, the language switcher, and ``/``.

The sign-in form has no session to carry its CSRF token yet, so it uses a
double-submit cookie: ``GET /sign-in`` sets a random token in a cookie scoped
to ``/sign-in`` and in the form, and ``POST /sign-in`` needs both, equal.
``POST /language`` takes no token: it must work before signing in, and all a
forged one could do is switch the pages' language.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from notifier.api.deps import RuntimeDep
from notifier.users import service as users
from notifier.web.deps import (
    LANG_COOKIE,
    SESSION_COOKIE,
    MaybeWebUser,
    WebUser,
    cookie_options,
    csrf_protect,
    home_of,
    local_path,
    redirect,
    render,
)
from notifier.web.i18n import LANGUAGES

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

SIGN_IN_COOKIE = "notifier_sign_in"
FormText = Annotated[str, Form()]


@router.get("/")
def home(user: MaybeWebUser) -> Response:
    """The role's home page, or the sign-in page."""
    return redirect(home_of(user) if user else "/sign-in")


@router.get("/sign-in")
def sign_in_page(
    request: Request, rt: RuntimeDep, user: MaybeWebUser, next: str | None = None
) -> Response:
    """The sign-in form; someone signed in already goes on to ``next`` or home."""
    if user is not None:
        return redirect(local_path(next) or home_of(user))
    return _form(request, rt, next=next)


@router.post("/sign-in")
def sign_in(
    request: Request,
    rt: RuntimeDep,
    username: FormText = "",
    password: FormText = "",
    csrf_token: FormText = "",
    next: FormText = "",
) -> Response:
    """Check the password; on success a new session and a redirect to ``next`` or home."""
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    if not cookie or not hmac.compare_digest(csrf_token.encode(), cookie.encode()):
        return _form(request, rt, next=next, problem="expired", status_code=403)
    settings = rt.settings
    # Committed before the answer: the browser's next request must find the session.
    with rt.db.session() as session:
        signed_in = users.sign_in(
            session,
            username,
            password,
            now=rt.clock(),
            idle=timedelta(hours=settings.session_hours),
            max_failures=settings.login_max_failures,
            lockout=timedelta(minutes=settings.login_lockout_minutes),
            client=request.client.host if request.client else None,
        )
        previous = request.cookies.get(SESSION_COOKIE)
        if signed_in is not None and previous:
            users.sign_out(session, previous)  # a new sign-in never keeps an older session
    if signed_in is None:
        return _form(request, rt, next=next, problem="failed", username=username)
    response = redirect(local_path(next) or home_of(signed_in.user))
    response.set_cookie(SESSION_COOKIE, signed_in.token, **cookie_options(settings))
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out", dependencies=[Depends(csrf_protect)])
def sign_out(request: Request, rt: RuntimeDep, _: WebUser) -> Response:
    """End this session."""
    with rt.db.session() as session:
        users.sign_out(session, request.cookies[SESSION_COOKIE])
    response = redirect("/sign-in")
    response.delete_cookie(SESSION_COOKIE, **cookie_options(rt.settings))
    return response


@router.post("/language")
def language(rt: RuntimeDep, lang: FormText = "", next: FormText = "") -> Response:
    """Show the pages in ``lang`` from now on (a cookie), and go back to ``next``."""
    response = redirect(local_path(next) or "/")
    if lang in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 24 * 3600, **cookie_options(rt.settings)
        )
    return response


def _form(
    request: Request,
    rt: RuntimeDep,
    *,
    next: str | None,
    problem: str = "",
    username: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    """The sign-in page with the double-submit token in the form and its cookie."""
    # The browser's token if it has one, so that two open sign-in tabs both work.
    token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        status_code=status_code,
        csrf_token=token,
        next=local_path(next) or "",
        problem=problem,
        username=username,
    )
    options = {**cookie_options(rt.settings), "path": "/sign-in"}
    response.set_cookie(SIGN_IN_COOKIE, token, **options)
    return response
