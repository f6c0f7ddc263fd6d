"""What a page module needs: the signed-in user, roles, CSRF checks, rendering.

A page module (``notifier/web/ops.py``, say) reads like this::

    from typing import Annotated

    from fastapi import APIRouter, Depends, Form, Request
    from fastapi.responses import HTMLResponse, RedirectResponse

    from notifier.api.deps import RuntimeDep, SessionDep
    from notifier.audit import service as audit
    from notifier.users.service import actor_of
    from notifier.web.deps import OpsUser, csrf_protect, redirect, render

    router = APIRouter(prefix="/ops", include_in_schema=False)

    @router.get("")
    def delivery_log(request: Request, user: OpsUser, session: SessionDep) -> HTMLResponse:
        return render(request, "ops/log.html", rows=...)

    @router.post("/deliveries/{delivery_id}/retry", dependencies=[Depends(csrf_protect)])
    def retry(delivery_id: int, user: OpsUser, rt: RuntimeDep,
              note: Annotated[str, Form()] = "") -> RedirectResponse:
        # Not SessionDep: it commits after the answer is sent, and the
        # browser's redirected GET could come first and miss the change.
        with rt.db.session() as session:
            ...  # the change itself, then in the same transaction:
            audit.record(session, actor=actor_of(user), action="delivery.retry",
                         target=f"delivery {delivery_id}", detail={"note": note})
        return redirect(f"/ops/deliveries/{delivery_id}")

and is listed in ``PAGES`` in ``notifier/web/__init__.py``. Its templates
live under ``notifier/web/templates/<module>/``, ``{% extends "base.html" %}``
and fill ``{% block content %}`` and ``{% block title %}`` (``{% block head %}``
may link a stylesheet of its own from ``/static``); every form that
POSTs carries ``<input type="hidden" name="csrf_token" value="{{ csrf_token }}">``.
Its texts go in ``notifier/web/locales/zh-TW/<module>.json`` (see
:mod:`notifier.web.i18n`).

- ``WebUser``: the signed-in :class:`~notifier.users.models.User`; someone
  not signed in is sent (303) to ``/sign-in?next=<this page>``.
- ``require_web(*roles)``: a dependency admitting those roles and admins,
  answering others with the 403 page; ``OpsUser`` and ``AgentUser`` are the
  two sections' (``SECTIONS``), which the header's links follow;
  ``SupervisorUser`` admits supervisors. Each page's roles are its row in
  :mod:`notifier.auth.access`, which a test holds the dependencies to.
- ``csrf_protect``: for every POST form route; the form's ``csrf_token`` must
  be the session's, or the answer is the 403 page and nothing is done.
- ``render(request, template, **context)``: an HTML response; the context
  also holds ``user`` (None on the sign-in page), ``csrf_token``,
  ``language``, ``languages``, ``translations``, ``sections`` (the parts of
  the site the user may open), ``path`` and ``here`` (path and query).
  Templates are autoescaped and strict: an undefined variable is an error,
  not a blank. No inline ``<script>`` or ``style=""``: the pages' CSP refuses
  them; put CSS and scripts in files under ``notifier/web/static/``.
- ``redirect(url)``: 303, the answer to a POST.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from jinja2.runtime import Context

from channels import speech
from notifier.api.deliveries import shown_text
from notifier.api.deps import RuntimeDep
from notifier.policy import local_time
from notifier.settings import Settings
from notifier.users import sessions
from notifier.users.models import User
from notifier.web.i18n import LANGUAGE_NAMES, pick_language, translations

__all__ = [
    "HOME",
    "LANG_COOKIE",
    "SECTIONS",
    "SESSION_COOKIE",
    "AgentUser",
    "MaybeWebUser",
    "OpsUser",
    "PageForbidden",
    "SignInRequired",
    "SupervisorUser",
    "WebUser",
    "client_address",
    "cookie_options",
    "csrf_protect",
    "home_of",
    "local_path",
    "redirect",
    "render",
    "require_web",
    "sections_of",
    "sign_in_url",
    "templates",
]

SESSION_COOKIE = "notifier_session"
LANG_COOKIE = "lang"
SECTIONS: dict[str, tuple[str, ...]] = {
    "ops": ("ops", "supervisor"),
    "agent": ("agent", "supervisor"),
}
"""The parts of the site and the roles that may open them; admins open every part."""
HOME: dict[str, str] = {"ops": "/ops", "agent": "/agent", "supervisor": "/agent", "admin": "/ops"}
"""Where each role lands after signing in."""

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@pass_context
def _gettext(context: Context, message: str) -> str:
    return str(context["translations"].gettext(message))


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return str(context["translations"].ngettext(singular, plural, n))


templates = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    extensions=["jinja2.ext.i18n"],
)
"""The pages' one Environment; ``_()`` reads the ``translations`` that ``render`` passes."""
templates.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
templates.filters["masked"] = shown_text
"""``{{ d.last_error|masked }}``, ``{{ value|masked(key) }}``: numbers and emails masked."""
templates.filters["script"] = speech.plain
"""``{{ body|script }}``: a voice script as people read it, without its SSML marks."""
templates.globals.update(shown_time=local_time.shown, local_date=local_time.local_date)
"""``{{ shown_time(at, tz) }}`` ("2026-12-02 04:41:07 Asia/Taipei"), ``{{ local_date(at, tz) }}``:
a stored UTC instant as people read it; pages pass the policy's ``tz``."""


class SignInRequired(Exception):
    """Answered with a redirect to the sign-in page, which comes back to ``next_path``."""

    def __init__(self, next_path: str | None) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    """Answered with the 403 page: the wrong role, or a form without the session's token."""

    def __init__(self, reason: Literal["role", "csrf"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _SignedIn:
    user: User
    csrf_token: str


def _signed_in(request: Request, rt: RuntimeDep) -> _SignedIn | None:
    found: _SignedIn | None = None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        idle = timedelta(hours=rt.settings.session_hours)
        max_age = timedelta(hours=rt.settings.session_max_hours)
        with rt.db.session() as session:
            live = sessions.resume(session, token, now=rt.clock(), idle=idle, max_age=max_age)
        if live is not None:
            found = _SignedIn(user=live[0], csrf_token=live[1].csrf_token)
    request.state.web = found
    return found


def _optional_user(signed_in: Annotated[_SignedIn | None, Depends(_signed_in)]) -> User | None:
    return signed_in.user if signed_in else None


MaybeWebUser = Annotated[User | None, Depends(_optional_user)]
"""The signed-in user, or None: for pages anyone may open."""


def _current_user(request: Request, user: MaybeWebUser) -> User:
    if user is None:
        raise SignInRequired(_here(request))
    return user


WebUser = Annotated[User, Depends(_current_user)]
"""The signed-in user; anyone else is sent to the sign-in page."""


def require_web(*roles: str) -> Callable[[User], User]:
    """A dependency admitting signed-in users of ``roles`` (and admins); others get the 403 page."""
    allowed = {*roles, "admin"}

    def check(user: WebUser) -> User:
        if user.role not in allowed:
            raise PageForbidden("role")
        return user

    return check


OpsUser = Annotated[User, Depends(require_web(*SECTIONS["ops"]))]
"""Someone who may open the ops pages: the delivery log, the dashboard."""
AgentUser = Annotated[User, Depends(require_web(*SECTIONS["agent"]))]
"""Someone who may open the agent pages: call and visit lists."""
SupervisorUser = Annotated[User, Depends(require_web("supervisor"))]
"""A supervisor (or admin): reassigning cases."""


async def csrf_protect(request: Request, _: WebUser) -> None:
    """For POST form routes: the form's ``csrf_token`` must be the session's."""
    sent = (await request.form()).get("csrf_token")
    signed_in: _SignedIn = request.state.web
    if not isinstance(sent, str) or not hmac.compare_digest(
        sent.encode(), signed_in.csrf_token.encode()
    ):
        raise PageForbidden("csrf")


def render(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page ``template`` as an HTML response, with the user, language and CSRF token."""
    signed_in: _SignedIn | None = getattr(request.state, "web", None)
    user = signed_in.user if signed_in else None
    language = pick_language(request.cookies.get(LANG_COOKIE), user)
    page = {
        "user": user,
        "csrf_token": signed_in.csrf_token if signed_in else "",
        "language": language,
        "languages": LANGUAGE_NAMES,
        "translations": translations(language),
        "sections": sections_of(user),
        "path": request.url.path,
        "here": _here(request) or "/",
        # The header's brand: the utility's name (Settings.identity), as its notices say it.
        "utility": request.app.state.runtime.settings.identity,
        **context,
    }
    return HTMLResponse(templates.get_template(template).render(page), status_code=status_code)


def sections_of(user: User | None) -> frozenset[str]:
    """The parts of the site ``user`` may open."""
    if user is None:
        return frozenset()
    return frozenset(
        s for s, roles in SECTIONS.items() if user.role in roles or user.role == "admin"
    )


def _here(request: Request) -> str | None:
    """This request's path and query, to come back to; None after a POST (it cannot be GET)."""
    if request.method not in ("GET", "HEAD"):
        return None
    url = request.url
    return url.path + (f"?{url.query}" if url.query else "")


def redirect(url: str) -> RedirectResponse:
    """303 See Other: after a POST the browser GETs ``url``."""
    return RedirectResponse(url, status_code=303)


def home_of(user: User) -> str:
    """The page a user lands on (``HOME``); every user role has one."""
    return HOME[user.role]


def local_path(target: str | None) -> str | None:
    """``target`` if it is a path on this site (``/ops?x=1``), else None: never another host."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return None  # browsers read "/\evil" and "/\t/evil" as another host
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


def sign_in_url(next_path: str | None) -> str:
    return "/sign-in" + (f"?{urlencode({'next': next_path})}" if next_path else "")


def client_address(request: Request, settings: Settings) -> str | None:
    """The browser's address for the sign-in throttle and the audit trail.

    The peer of the connection, unless ``trust_forwarded_headers`` says a
    proxy of ours is in front: then the last address of ``X-Forwarded-For``,
    the one our nearest proxy appended (anything before it the client wrote).
    """
    peer = request.client.host if request.client else None
    if not settings.trust_forwarded_headers:
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    nearest = hops[-1] if hops else ""
    try:
        return str(ipaddress.ip_address(nearest))
    except ValueError:
        return peer


def cookie_options(settings: Settings) -> dict[str, Any]:
    """HttpOnly, SameSite=Lax, Path=/, and Secure when the service is served over https."""
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": settings.public_url.startswith("https"),
        "path": "/",
    }
