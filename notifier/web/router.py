"""Signing in and out, the language switcher, and ``/``.

The sign-in form has no session to carry its CSRF token yet, so it uses a
double-submit cookie: ``GET /sign-in`` sets a random token in a cookie scoped
to ``/sign-in`` and in the form, and ``POST /sign-in`` needs both, equal.
``POST /language`` takes no token: it must work before signing in, and all a
forged one could do is switch the pages' language.

A password that is right starts a session at the stage the account needs
(:mod:`notifier.users.service`): ``/sign-in/totp`` asks for the code,
``/sign-in/enrol`` sets up a key; each right answer replaces the pending
session with a new, signed-in one. ``/sign-in/oidc`` leaves for the
directory (:mod:`notifier.users.directory`) and ``/sign-in/oidc/callback``
comes back. A client address that failed too often gets 429 with
``Retry-After`` on each of them.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from notifier.api.deps import RuntimeDep
from notifier.audit import service as audit
from notifier.settings import Settings
from notifier.users import directory, sessions, totp
from notifier.users import service as users
from notifier.users.models import User, UserSession
from notifier.web.deps import (
    LANG_COOKIE,
    SESSION_COOKIE,
    MaybeWebUser,
    WebUser,
    client_address,
    cookie_options,
    csrf_protect,
    home_of,
    local_path,
    redirect,
    render,
    sign_in_url,
)
from notifier.web.i18n import LANGUAGES

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

SIGN_IN_COOKIE = "notifier_sign_in"
OIDC_COOKIE = "notifier_oidc"
"""The directory sign-in in progress (state, nonce, PKCE verifier), scoped to /sign-in/oidc."""
OIDC_PENDING_FOR = timedelta(minutes=10)
log = logging.getLogger(__name__)
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
    """Check the password; on success a session (or its TOTP step) and a redirect."""
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    if not cookie or not hmac.compare_digest(csrf_token.encode(), cookie.encode()):
        return _form(request, rt, next=next, problem="expired", status_code=403)
    settings = rt.settings
    if settings.oidc.only:
        return _form(request, rt, next=next, problem="directory_only", status_code=403)
    client = client_address(request, settings)
    # Committed before the answer: the browser's next request must find the session.
    with rt.db.session() as session:
        try:
            signed_in = users.sign_in(
                session, username, password, now=rt.clock(), rules=rules_of(settings), client=client
            )
        except users.Throttled as exc:
            return _throttled(request, rt, next=next, retry_after=exc.retry_after)
        previous = request.cookies.get(SESSION_COOKIE)
        if signed_in is not None and previous:
            users.sign_out(session, previous)  # a new sign-in never keeps an older session
    if signed_in is None:
        return _form(request, rt, next=next, problem="failed", username=username)
    return _signed_in(rt, signed_in, next=next)


def _signed_in(rt: RuntimeDep, signed_in: users.SignedIn, *, next: str) -> Response:
    """The redirect after a sign-in step: home (or ``next``), or the TOTP step still owed."""
    target = local_path(next) or ""
    if signed_in.stage == "full":
        url = target or home_of(signed_in.user)
    else:
        url = f"/sign-in/{signed_in.stage}" + (f"?{urlencode({'next': target})}" if target else "")
    response = redirect(url)
    response.set_cookie(SESSION_COOKIE, signed_in.token, **cookie_options(rt.settings))
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


def _pending(request: Request, rt: RuntimeDep, session: Session, stage: str) -> Pending | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    settings = rt.settings
    live = sessions.resume(
        session,
        token,
        now=rt.clock(),
        idle=timedelta(hours=settings.session_hours),
        max_age=timedelta(hours=settings.session_max_hours),
        stage=stage,
    )
    return Pending(user=live[0], row=live[1], token=token) if live else None


@dataclass(frozen=True)
class Pending:
    user: User
    row: UserSession
    token: str


@router.get("/sign-in/totp")
def totp_page(request: Request, rt: RuntimeDep, next: str = "") -> Response:
    """The second step of a password sign-in: the authenticator app's code."""
    with rt.db.session() as session:
        pending = _pending(request, rt, session, "totp")
    if pending is None:
        return redirect(sign_in_url(local_path(next)))
    return _code_form(request, "sign_in_totp.html", pending, next=next)


@router.post("/sign-in/totp")
def totp_check(
    request: Request,
    rt: RuntimeDep,
    code: FormText = "",
    csrf_token: FormText = "",
    next: FormText = "",
) -> Response:
    """Check the code; a right one replaces the pending session with a signed-in one."""
    settings = rt.settings
    client = client_address(request, settings)
    now = rt.clock()
    with rt.db.session() as session:
        pending = _pending(request, rt, session, "totp")
        if pending is None:
            return redirect(sign_in_url(local_path(next)))
        if not hmac.compare_digest(csrf_token.encode(), pending.row.csrf_token.encode()):
            return _code_form(
                request, "sign_in_totp.html", pending, next=next, problem="expired", status_code=403
            )
        rules = rules_of(settings)
        wait = users.client_wait(session, client, now=now, rules=rules)
        if wait is not None:
            return _throttled(request, rt, next=next, retry_after=wait)
        user = session.get(User, pending.user.id, with_for_update=True)
        assert user is not None
        if not totp.verify(session, user, code, now=now):
            users.refuse_client(session, client, now=now, rules=rules)
            audit.record(
                session,
                actor=audit.WEB,
                action="user.sign_in_failed",
                target=users.actor_of(user),
                detail={"reason": "wrong totp code", **({"client": client} if client else {})},
            )
            failed = True
        else:
            failed = False
            sessions.end(session, pending.token)
            signed_in = users.start_session(
                session, user, now=now, rules=rules, client=client, method="password+totp"
            )
    if failed:
        return _code_form(request, "sign_in_totp.html", pending, next=next, problem="wrong_code")
    return _signed_in(rt, signed_in, next=next)


@router.get("/sign-in/enrol")
def enrol_page(request: Request, rt: RuntimeDep, next: str = "") -> Response:
    """Set up the TOTP key a supervisor or admin needs: a new key, shown this once."""
    with rt.db.session() as session:
        pending = _pending(request, rt, session, "enrol")
        if pending is None:
            return redirect(sign_in_url(local_path(next)))
        user = session.get(User, pending.user.id, with_for_update=True)
        assert user is not None
        secret = totp.begin_enrolment(session, user)
        uri = totp.provisioning_uri(user, secret)
    return _code_form(
        request,
        "sign_in_enrol.html",
        pending,
        next=next,
        uri=uri,
        secret=secret,
        action="/sign-in/enrol",
    )


@router.post("/sign-in/enrol")
def enrol_check(
    request: Request,
    rt: RuntimeDep,
    code: FormText = "",
    csrf_token: FormText = "",
    next: FormText = "",
) -> Response:
    """A first code confirms the new key; the pending session becomes a signed-in one."""
    settings = rt.settings
    client = client_address(request, settings)
    now = rt.clock()
    with rt.db.session() as session:
        pending = _pending(request, rt, session, "enrol")
        if pending is None:
            return redirect(sign_in_url(local_path(next)))
        if not hmac.compare_digest(csrf_token.encode(), pending.row.csrf_token.encode()):
            return redirect(_stage_url("enrol", next))
        user = session.get(User, pending.user.id, with_for_update=True)
        assert user is not None
        confirmed = totp.confirm(session, user, code, now=now)
        if confirmed:
            sessions.end(session, pending.token)
            signed_in = users.start_session(
                session,
                user,
                now=now,
                rules=rules_of(settings),
                client=client,
                method="password+totp",
            )
    if not confirmed:
        # A new key and page: the old key's code was wrong, or the page was stale.
        return redirect(_stage_url("enrol", next, problem="wrong_code"))
    return _signed_in(rt, signed_in, next=next)


def _stage_url(stage: str, next: str, **query: str) -> str:
    params = {**({"next": local_path(next) or ""} if local_path(next) else {}), **query}
    return f"/sign-in/{stage}" + (f"?{urlencode(params)}" if params else "")


def _code_form(
    request: Request,
    template: str,
    pending: Pending,
    *,
    next: str,
    problem: str = "",
    status_code: int = 200,
    **context: str,
) -> HTMLResponse:
    return render(
        request,
        template,
        status_code=status_code,
        csrf_token=pending.row.csrf_token,
        next=local_path(next) or "",
        problem=problem or request.query_params.get("problem", ""),
        name=pending.user.display_name,
        **context,
    )


@router.get("/account/totp")
def account_totp_page(request: Request, rt: RuntimeDep, user: WebUser) -> Response:
    """A signed-in password user (ops, agent) sets up a TOTP key of their own accord."""
    if user.directory_subject is not None or user.totp_confirmed_at is not None:
        return render(request, "account_totp.html", done=user.totp_confirmed_at is not None)
    with rt.db.session() as session:
        row = session.get(User, user.id, with_for_update=True)
        assert row is not None
        secret = totp.begin_enrolment(session, row)
        uri = totp.provisioning_uri(row, secret)
    return render(
        request,
        "sign_in_enrol.html",
        action="/account/totp",
        next="",
        problem=request.query_params.get("problem", ""),
        name=user.display_name,
        uri=uri,
        secret=secret,
    )


@router.post("/account/totp", dependencies=[Depends(csrf_protect)])
def account_totp_confirm(rt: RuntimeDep, user: WebUser, code: FormText = "") -> Response:
    """The first code confirms the key; from the next sign-in on, a code is asked for."""
    with rt.db.session() as session:
        row = session.get(User, user.id, with_for_update=True)
        assert row is not None
        confirmed = totp.confirm(session, row, code, now=rt.clock())
    if not confirmed:
        return redirect("/account/totp?problem=wrong_code")
    return redirect("/account/totp")


@router.get("/sign-in/oidc")
def oidc_begin(request: Request, rt: RuntimeDep, next: str = "") -> Response:
    """Leave for the directory's sign-in; it sends the browser back to the callback."""
    oidc = rt.settings.oidc
    if not oidc.enabled:
        return redirect("/sign-in")
    try:
        url, pending = directory.begin(
            oidc, redirect_uri=_callback_url(rt), next=local_path(next) or ""
        )
    except directory.DirectoryRefused as exc:
        log.warning("directory sign-in could not start: %s", exc)
        return _form(request, rt, next=next, problem="directory_failed", status_code=502)
    response = RedirectResponse(url, status_code=303)
    value = base64.urlsafe_b64encode(json.dumps(pending.to_json()).encode()).decode()
    options = {**cookie_options(rt.settings), "path": "/sign-in/oidc"}
    response.set_cookie(
        OIDC_COOKIE, value, max_age=int(OIDC_PENDING_FOR.total_seconds()), **options
    )
    return response


@router.get("/sign-in/oidc/callback")
def oidc_callback(request: Request, rt: RuntimeDep) -> Response:
    """Back from the directory: verify who it says, then a session, or a page saying why not."""
    settings = rt.settings
    oidc = settings.oidc
    if not oidc.enabled:
        return redirect("/sign-in")
    pending = _oidc_pending(request.cookies.get(OIDC_COOKIE, ""))
    client = client_address(request, settings)
    params = {k: v for k, v in request.query_params.items()}
    refused: directory.DirectoryRefused | None = None
    signed_in: users.SignedIn | None = None
    with rt.db.session() as session:
        rules = rules_of(settings)
        now = rt.clock()
        wait = users.client_wait(session, client, now=now, rules=rules)
        if wait is not None:
            return _throttled(request, rt, next="", retry_after=wait)
        try:
            if pending is None:
                raise directory.DirectoryRefused("failed", "no pending sign-in in this browser")
            claims = directory.finish(
                oidc, redirect_uri=_callback_url(rt), pending=pending, params=params
            )
            signed_in = directory.sign_in(
                session, claims, oidc, now=now, rules=rules, client=client
            )
        except directory.DirectoryRefused as exc:
            refused = exc
            users.refuse_client(session, client, now=now, rules=rules)
            log.warning("directory sign-in refused: %s", exc.reason)
        previous = request.cookies.get(SESSION_COOKIE)
        if signed_in is not None and previous:
            users.sign_out(session, previous)
    response: Response
    if refused is not None or signed_in is None:
        reason = refused.reason if refused else "failed"
        response = _form(request, rt, next=None, problem=f"directory_{reason}", status_code=403)
    else:
        response = _signed_in(rt, signed_in, next=pending.next if pending else "")
    response.delete_cookie(OIDC_COOKIE, path="/sign-in/oidc")
    return response


def _oidc_pending(value: str) -> directory.Pending | None:
    try:
        return directory.Pending.from_json(json.loads(base64.urlsafe_b64decode(value.encode())))
    except (ValueError, UnicodeError):
        return None


def _callback_url(rt: RuntimeDep) -> str:
    return rt.settings.public_url.rstrip("/") + directory.CALLBACK_PATH


def _throttled(request: Request, rt: RuntimeDep, *, next: str, retry_after: int) -> HTMLResponse:
    response = _form(request, rt, next=next, problem="throttled", status_code=429)
    response.headers["Retry-After"] = str(retry_after)
    return response


def rules_of(settings: Settings) -> users.SignInRules:
    """The sign-in rules the settings give."""
    return users.SignInRules(
        idle=timedelta(hours=settings.session_hours),
        max_age=timedelta(hours=settings.session_max_hours),
        max_failures=settings.login_max_failures,
        lockout=timedelta(minutes=settings.login_lockout_minutes),
        throttle_failures=settings.login_throttle_failures,
        throttle_window=timedelta(minutes=settings.login_throttle_minutes),
    )


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
    oidc = rt.settings.oidc
    response = render(
        request,
        "sign_in.html",
        status_code=status_code,
        csrf_token=token,
        next=local_path(next) or "",
        problem=problem,
        username=username,
        directory=oidc.name if oidc.enabled else "",
        passwords=not oidc.only,
    )
    options = {**cookie_options(rt.settings), "path": "/sign-in"}
    response.set_cookie(SIGN_IN_COOKIE, token, **options)
    return response
