"""Sign-in through the utility's directory: OpenID Connect, authorization code flow (authlib).

``begin`` reads the issuer's ``/.well-known/openid-configuration`` and makes
the authorization URL with a fresh ``state``, ``nonce`` and PKCE verifier
(S256); the caller keeps those in the browser (a short cookie) as a
:class:`Pending`. ``finish`` checks the returned ``state``, trades the code
for tokens (with the verifier and the client secret) and verifies the ID
token: its signature with the issuer's JWKS, ``iss``, ``aud``, ``exp`` and
``nonce``. Claims the ID token lacks (the roles claim, often) are read from
the userinfo endpoint, whose ``sub`` must be the token's.

``sign_in`` then maps ``roles_claim`` through ``role_map`` (the highest role
wins), creates or updates the user (``directory_subject`` is ``<issuer>
<sub>``; the username is ``preferred_username``, else ``sub``; no password)
and starts a session. The role is set from the claim at every sign-in, so a
change in the directory counts at the next one. Refusals are
:class:`DirectoryRefused` with a ``reason`` the page explains; nothing about
the tokens is logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from sqlmodel import Session, select

from notifier.audit import service as audit
from notifier.settings import OidcSettings
from notifier.users import service as users
from notifier.users.models import User

__all__ = [
    "CALLBACK_PATH",
    "ROLE_ORDER",
    "DirectoryRefused",
    "Pending",
    "begin",
    "finish",
    "role_of",
    "sign_in",
]

CALLBACK_PATH = "/sign-in/oidc/callback"
ROLE_ORDER: tuple[str, ...] = ("admin", "supervisor", "ops", "agent")
"""When the claim maps to several roles, the first of these wins."""
_METADATA_TTL = 600.0
_LEEWAY_SECONDS = 60
_metadata: dict[str, tuple[float, dict[str, Any]]] = {}
log = logging.getLogger(__name__)


class DirectoryRefused(Exception):
    """A directory sign-in that may not go on; ``reason`` is what the page says.

    ``failed`` (the flow broke: a stale or forged answer, a bad token, the
    directory unreachable), ``no_role`` (the claim maps to no role),
    ``taken`` (a local account has that username), ``disabled``, ``no_agent``
    (an agent user not yet bound to their agent).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Pending:
    """What the browser keeps between leaving for the directory and coming back."""

    state: str
    nonce: str
    code_verifier: str
    next: str

    def to_json(self) -> dict[str, str]:
        return {"s": self.state, "n": self.nonce, "v": self.code_verifier, "next": self.next}

    @classmethod
    def from_json(cls, data: object) -> Pending | None:
        if not isinstance(data, dict):
            return None
        values = [data.get(k) for k in ("s", "n", "v", "next")]
        if not all(isinstance(v, str) for v in values) or not all(values[:3]):
            return None
        state, nonce, verifier, next_ = (str(v) for v in values)
        return cls(state=state, nonce=nonce, code_verifier=verifier, next=next_)


def _discover(oidc: OidcSettings) -> dict[str, Any]:
    """The issuer's metadata, read again every few minutes."""
    now = time.monotonic()
    cached = _metadata.get(oidc.issuer)
    if cached is not None and now - cached[0] < _METADATA_TTL:
        return cached[1]
    url = oidc.issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        answer = requests.get(url, timeout=oidc.timeout_seconds)
        answer.raise_for_status()
        metadata: dict[str, Any] = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise DirectoryRefused("failed", f"discovery: {type(exc).__name__}") from exc
    if metadata.get("issuer") != oidc.issuer:
        raise DirectoryRefused("failed", "discovery names another issuer")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(metadata.get(key), str):
            raise DirectoryRefused("failed", f"discovery lacks {key}")
    _metadata[oidc.issuer] = (now, metadata)
    return metadata


def _client(oidc: OidcSettings, redirect_uri: str) -> OAuth2Session:
    return OAuth2Session(
        client_id=oidc.client_id,
        client_secret=oidc.client_secret.get_secret_value(),
        scope=" ".join(oidc.scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )


def begin(oidc: OidcSettings, *, redirect_uri: str, next: str) -> tuple[str, Pending]:
    """The directory's authorization URL to send the browser to, and what to keep meanwhile."""
    metadata = _discover(oidc)
    pending = Pending(
        state=generate_token(32),
        nonce=generate_token(32),
        code_verifier=generate_token(48),
        next=next,
    )
    with _client(oidc, redirect_uri) as client:
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"],
            state=pending.state,
            nonce=pending.nonce,
            code_verifier=pending.code_verifier,
        )
    return str(url), pending


def finish(
    oidc: OidcSettings, *, redirect_uri: str, pending: Pending, params: dict[str, str]
) -> dict[str, Any]:
    """The verified claims of the person the directory sent back (``params``: the callback's query)."""
    if params.get("state") != pending.state:
        raise DirectoryRefused("failed", "state does not match")
    if "error" in params:
        raise DirectoryRefused("failed", f"the directory answered {params['error'][:64]!r}")
    code = params.get("code")
    if not code:
        raise DirectoryRefused("failed", "no code")
    metadata = _discover(oidc)
    if "iss" in params and params["iss"] != oidc.issuer:
        raise DirectoryRefused("failed", "the answer names another issuer")  # RFC 9207
    with _client(oidc, redirect_uri) as client:
        try:
            token = client.fetch_token(
                metadata["token_endpoint"],
                code=code,
                code_verifier=pending.code_verifier,
                timeout=oidc.timeout_seconds,
            )
        except Exception as exc:  # authlib raises OAuthError, requests its own
            raise DirectoryRefused("failed", f"token: {type(exc).__name__}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise DirectoryRefused("failed", "no id_token")
        claims = _verified(oidc, metadata, id_token, token, pending.nonce)
        if oidc.roles_claim not in claims or "preferred_username" not in claims:
            claims = {**_userinfo(client, metadata, claims, oidc), **claims}
    return claims


def _verified(
    oidc: OidcSettings,
    metadata: dict[str, Any],
    id_token: str,
    token: dict[str, Any],
    nonce: str,
) -> dict[str, Any]:
    algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    registry = JWSRegistry(algorithms=[a for a in algorithms if a != "none"])
    try:
        try:
            decoded = jwt.decode(id_token, _key_set(oidc, metadata), registry=registry)
        except InvalidKeyIdError:  # the directory rotated its keys
            decoded = jwt.decode(id_token, _key_set(oidc, metadata, force=True), registry=registry)
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": oidc.issuer},
                "aud": {"essential": True, "value": oidc.client_id},
                "exp": {"essential": True},
            },
            {
                "nonce": nonce,
                "client_id": oidc.client_id,
                "access_token": token.get("access_token"),
            },
        )
        claims.validate(leeway=_LEEWAY_SECONDS)
    except (JoseError, ValueError) as exc:
        raise DirectoryRefused("failed", f"id_token: {type(exc).__name__}") from exc
    return dict(claims)


_jwks: dict[str, KeySet] = {}


def _key_set(oidc: OidcSettings, metadata: dict[str, Any], *, force: bool = False) -> KeySet:
    uri = str(metadata["jwks_uri"])
    if force or uri not in _jwks:
        try:
            answer = requests.get(uri, timeout=oidc.timeout_seconds)
            answer.raise_for_status()
            _jwks[uri] = KeySet.import_key_set(answer.json())
        except (requests.RequestException, ValueError) as exc:
            raise DirectoryRefused("failed", f"jwks: {type(exc).__name__}") from exc
    return _jwks[uri]


def _userinfo(
    client: OAuth2Session, metadata: dict[str, Any], claims: dict[str, Any], oidc: OidcSettings
) -> dict[str, Any]:
    endpoint = metadata.get("userinfo_endpoint")
    if not isinstance(endpoint, str):
        return {}
    try:
        answer = client.get(endpoint, timeout=oidc.timeout_seconds)
        answer.raise_for_status()
        info = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise DirectoryRefused("failed", f"userinfo: {type(exc).__name__}") from exc
    if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
        raise DirectoryRefused("failed", "userinfo is about someone else")
    return info


def role_of(claims: dict[str, Any], oidc: OidcSettings) -> str | None:
    """Our role for the values of ``roles_claim``, the highest of ``ROLE_ORDER``; None: none."""
    values = claims.get(oidc.roles_claim)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return None
    roles = {oidc.role_map[v] for v in values if isinstance(v, str) and v in oidc.role_map}
    return next((role for role in ROLE_ORDER if role in roles), None)


def sign_in(
    session: Session,
    claims: dict[str, Any],
    oidc: OidcSettings,
    *,
    now: datetime,
    rules: users.SignInRules,
    client: str | None,
) -> users.SignedIn:
    """A session for the person behind verified ``claims``; the user row made or brought up to date."""
    sub = str(claims["sub"])
    subject = f"{oidc.issuer} {sub}"[:255]
    role = role_of(claims, oidc)
    user = session.exec(
        select(User).where(User.directory_subject == subject).with_for_update()
    ).first()
    if role is None:
        _refused(session, user, "no_role", claims, client)
        raise DirectoryRefused("no_role")
    if user is None:
        user = _new_user(session, claims, sub=sub, subject=subject, role=role, client=client)
    if not user.active:
        _refused(session, user, "disabled", claims, client)
        raise DirectoryRefused("disabled")
    if user.role != role:
        audit.record(
            session,
            actor=audit.WEB,
            action="user.role_changed",
            target=users.actor_of(user),
            detail={"from": user.role, "to": role, "by": "directory"},
        )
        user.role = role
    if role == "agent" and user.agent_id is None:
        _refused(session, user, "no_agent", claims, client)
        raise DirectoryRefused("no_agent")
    name = str(claims.get("name") or "").strip()[:200]
    if name and name != user.display_name:
        user.display_name = name
    session.add(user)
    return users.start_session(
        session, user, now=now, rules=rules, client=client, method="directory"
    )


def _new_user(
    session: Session,
    claims: dict[str, Any],
    *,
    sub: str,
    subject: str,
    role: str,
    client: str | None,
) -> User:
    username = str(claims.get("preferred_username") or sub).strip().lower()[:64]
    taken = session.exec(select(User).where(User.username == username)).first()
    if taken is not None:
        _refused(session, taken, "taken", claims, client)
        raise DirectoryRefused("taken", username)
    name = str(claims.get("name") or "").strip()[:200] or username
    user = User(
        username=username,
        display_name=name,
        password_hash="",
        role=role,
        directory_subject=subject,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=audit.WEB,
        action="user.created",
        target=users.actor_of(user),
        detail={"role": role, "by": "directory"},
    )
    return user


def _refused(
    session: Session, user: User | None, reason: str, claims: dict[str, Any], client: str | None
) -> None:
    who = users.actor_of(user) if user else "a new directory user"
    log.warning("directory sign-in refused for %s: %s", who, reason)
    detail: dict[str, Any] = {"reason": reason, "method": "directory"}
    if client:
        detail["client"] = client
    audit.record(
        session,
        actor=audit.WEB,
        action="user.sign_in_failed",
        target=users.actor_of(user) if user else None,
        detail=detail,
    )
