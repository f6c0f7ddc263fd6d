"""App push through Firebase Cloud Messaging, with the firebase-admin SDK.

One FCM message goes to each device token of a :class:`~channels.base.Message`,
with the subject and body as the notification and ``Message.data`` as the data
payload (the app's deep link). The sends run on the caller's event loop
through the SDK's ``send_each_async`` (its httpx client, HTTP/2 to Google), not
on a thread per message: ``send_many`` sends every token of every message it
is handed, ``max_in_flight`` at a time, and maps each answer back to its message.

What the message says beside its text goes into the platform blocks
(https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages,
https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns):

* ``Message.expires_at``: ``android.ttl`` (seconds left at send time, 0 once
  past: "now or never") and the ``apns-expiration`` header (epoch seconds).
  None leaves FCM's default of 4 weeks.
* ``Message.collapse_key``: ``android.collapse_key`` and ``apns-collapse-id``
  (at most 64 bytes: a longer key is sent as its SHA-256).
* ``Message.priority``: ``android.priority`` ``high``/``normal`` and
  ``apns-priority`` 10/5; every notice is an alert (``apns-push-type: alert``,
  which iOS 13+ requires).

Errors, mapped once in :func:`_map_error`::

    UnregisteredError,                            PermanentChannelError, that token rejected
      InvalidArgumentError about the token
    QuotaExceededError (429), UnavailableError,   TransientChannelError (retry_after from a
      InternalError, other 5xx, timeouts,           429's Retry-After; a 429 without one
      connection errors                             waits at least 60 s, as FCM asks)
    UnauthenticatedError, PermissionDeniedError,  ProviderChannelError for the whole message
      ThirdPartyAuthError, SenderIdMismatchError,   (our project, credentials or APNs key;
      a credential that cannot be refreshed         no token blamed, none forgotten)
    InvalidArgumentError about the payload,       PermanentChannelError for the whole message
      other 4xx                                     (content; no token blamed)
    a read timeout, a reset or a disconnect       AmbiguousChannelError: FCM may have the push
      once the request was written (the SDK's       (a connect timeout or a refused connection
      DeadlineExceededError / UnknownError whose    stays transient: nothing reached FCM)
      cause is httpx's ReadTimeout, ReadError,
      RemoteProtocolError)

SENDER_ID_MISMATCH says the token belongs to another Firebase project than
the one we send from: when every token of every customer answers it, the
project id or the credentials are wrong, not the tokens
(https://firebase.google.com/docs/cloud-messaging/error-codes).

One send is *sent* if any token was accepted (``SendResult.rejected`` names
the dead tokens); with none accepted it raises the ``ProviderChannelError`` if
any token met one, else ``PermanentChannelError(rejected=...)`` if every
token was refused, and ``TransientChannelError`` if none was accepted and at
least one failed transiently; ``AmbiguousChannelError`` if none was accepted
and FCM may hold one of them.

SDK quirks handled here:

* ``Message.token`` is deprecated in firebase-admin 7.7; targets are set with
  ``Message(fid=...)`` (the JSON field ``fid``), as the SDK source asks
  (https://firebase.google.com/docs/reference/admin/python/firebase_admin.messaging#message).
* There is no base-URL option and no messaging emulator: the endpoint comes
  from the private class attribute ``messaging._MessagingService.FCM_URL``,
  read once per service into the instance's ``_fcm_url``. :func:`_point_at`
  re-aims one app's service, not the class (see there).
* The SDK retries 500 and 503 itself (httpx ``HttpxRetry(max_retries=4,
  backoff_factor=0.5)`` for the async sends; the sync client's urllib3 retry
  also re-sends the POST once on a read timeout, so a push that reached FCM
  goes out twice). ``sdk_retries=False`` (the default) gives the service an
  async client that sends each request once, so that the ``notifier`` retry
  policy alone decides whether a push is sent again.
* A 401 makes google-auth's ``AuthorizedSession`` refresh the credential and
  retry twice; a static ``access_token`` (simulators, tests) cannot refresh,
  so its ``refresh`` does nothing and the 401 surfaces as
  ``UnauthenticatedError``
  (https://googleapis.dev/python/google-auth/latest/reference/google.auth.transport.requests.html).
* An ``INVALID_ARGUMENT`` may be about the token or about the payload; only
  the first blames the token
  (https://firebase.google.com/docs/cloud-messaging/error-codes,
  https://firebase.google.com/docs/cloud-messaging/manage-tokens).
* ``firebase_admin.delete_app`` closes the service's httpx client with
  ``asyncio.run``, which fails inside a running loop: the client is closed on
  the loop first and ``delete_app`` runs in a thread.
* The async client belongs to the event loop of its first send: one instance
  per loop (the runtime keeps one per thread, each with its own loop).
* App names are global in firebase-admin: each instance gets its own.
* CPU: the SDK's path costs 1.5-2.2 ms of CPU per push (bench/channels.py
  ``--cpu``, 50 ms simulator, 20-100 in flight), nearly all in httpx and
  httpcore (the pool scans every connection on each event) and the SDK's
  auth flow (a ``requests.Session`` per request); the same JSON posted with
  aiohttp cost 0.15-0.23 ms. Keeping all 100 connections alive instead of
  httpx's 20 made it worse (5-9 ms: more connections to scan), and 20 in
  flight sent about as many per second as 100. Against Google the client
  speaks HTTP/2 (one connection, many streams), which the HTTP/1.1
  simulator cannot show.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import firebase_admin
import google.auth.credentials
import google.auth.exceptions
import httpx
import requests
import requests.adapters
from firebase_admin import _http_client, messaging
from firebase_admin import credentials as fb_credentials
from firebase_admin import exceptions as fb_exceptions
from firebase_admin._retry import HttpxRetry
from urllib3.util.retry import Retry

from channels.base import (
    AmbiguousChannelError,
    Channel,
    ChannelError,
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendOutcome,
    SendResult,
    TransientChannelError,
)
from channels.registry import register

__all__ = ["FcmPush"]

_GOOGLE = "https://fcm.googleapis.com"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_TARGET_FIELDS = frozenset({"message.token", "message.fid"})
_TRANSIENT = (
    fb_exceptions.ResourceExhaustedError,  # QuotaExceededError is one
    fb_exceptions.UnavailableError,  # also: connection refused or reset
    fb_exceptions.InternalError,
    fb_exceptions.DeadlineExceededError,  # also: client timeout
    fb_exceptions.AbortedError,
    fb_exceptions.UnknownError,
)
_AFTER_WRITE = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)
"""httpx's failures once the request was on the wire: FCM may have accepted it."""
_POOL_SIZE = 100  # what the SDK mounts for fcm.googleapis.com
_QUOTA_BACKOFF = 60.0
"""FCM: after a 429 without Retry-After, wait at least a minute
(https://firebase.google.com/docs/cloud-messaging/scale-fcm#handling-retries)."""
_COLLAPSE_ID_BYTES = 64  # APNs refuses a longer apns-collapse-id


class _StaticToken(google.auth.credentials.Credentials):
    """A fixed OAuth access token: no round trip to Google (simulators, tests)."""

    def __init__(self, token: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.token = token

    def refresh(self, request: Any) -> None:
        # Nothing to refresh: after a 401 the session retries with the same token
        # and the SDK then raises UnauthenticatedError, which is what we want.
        return None


@register("push", "fcm")
class FcmPush(Channel):
    """Push to app instances through FCM HTTP v1, one message per device token."""

    channel: ClassVar[str] = "push"
    provider: ClassVar[str] = "fcm"
    max_in_flight: ClassVar[int] = _POOL_SIZE
    """httpx's connection limit (100): more at once only queue in its pool."""

    def __init__(
        self,
        *,
        project_id: str,
        credentials_file: str | None = None,
        access_token: str | None = None,
        base_url: str = _GOOGLE,
        timeout: float = 10.0,
        sdk_retries: bool = False,
        app_name: str | None = None,
    ) -> None:
        if not project_id:
            raise ValueError("fcm: project_id is required (the Firebase project to send from)")
        if bool(credentials_file) == bool(access_token):
            raise ValueError("fcm: set exactly one of credentials_file or access_token")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"fcm: base_url must be an http(s) URL, not {base_url!r}")
        if timeout <= 0:
            raise ValueError(f"fcm: timeout must be positive, not {timeout!r}")
        credential: Any
        if access_token:
            credential = _StaticToken(access_token)
        else:
            try:
                credential = fb_credentials.Certificate(credentials_file)
            except (OSError, ValueError) as exc:
                raise ValueError(f"fcm: credentials_file {credentials_file!r}: {exc}") from exc
        self.project_id = project_id
        self.base_url = base_url.rstrip("/")
        self._app: Any = firebase_admin.initialize_app(
            credential,
            {"projectId": project_id, "httpTimeout": timeout},
            name=app_name or f"notifier-fcm-{uuid.uuid4().hex[:12]}",
        )
        try:
            self._session = _point_at(
                self._app, self.base_url, sdk_retries=sdk_retries, timeout=timeout
            )
        except BaseException:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(firebase_admin.delete_app, self._app).result()
            raise

    @property
    def app_name(self) -> str:
        """The name of this instance's ``firebase_admin.App``."""
        return str(self._app.name)

    async def send(self, message: Message) -> SendResult:
        """One FCM message per token; see the module docstring for the outcome."""
        (outcome,) = await self.send_many([message])
        if isinstance(outcome, ChannelError):
            raise outcome
        return outcome

    async def send_many(
        self, messages: Sequence[Message], *, delays: Sequence[float] = ()
    ) -> list[SendOutcome]:
        """Every token of every message, ``max_in_flight`` requests at a time.

        Each push waits for its message's rate slot, then for a free
        connection here rather than in httpx's pool: httpcore scans every
        queued request against every connection on each event, so 600 sends
        queued on 100 connections took 8.6 s where 100 at a time take 0.8 s.
        """
        if self._app is None:
            raise RuntimeError("fcm: send_many() after aclose()")
        waits = list(delays) or [0.0] * len(messages)
        tokens = [list(dict.fromkeys(m.to)) for m in messages]  # one push per device
        pairs = [(i, token) for i, mine in enumerate(tokens) for token in mine]

        gate = asyncio.Semaphore(self.max_in_flight)

        async def call(i: int, token: str) -> str | ChannelError:
            if waits[i] > 0:
                await asyncio.sleep(waits[i])
            async with gate:
                (outcome,) = await self._send_batch([(token, messages[i])])
            return outcome

        answers = await asyncio.gather(*(call(i, token) for i, token in pairs))
        outcomes = dict(zip(pairs, answers, strict=True))
        results: list[SendOutcome] = []
        for i, mine in enumerate(tokens):
            if not mine:
                results.append(PermanentChannelError("fcm: no device token", code="no_recipient"))
                continue
            try:
                results.append(_result(mine, {token: outcomes[(i, token)] for token in mine}))
            except ChannelError as exc:
                results.append(exc)
        return results

    async def aclose(self) -> None:
        """Delete this instance's Firebase app and close its connections."""
        app, self._app = self._app, None
        if app is not None:
            # On this loop, which its connections belong to; delete_app's own close is then a no-op.
            await messaging._get_messaging_service(app)._async_client.aclose()
            await asyncio.to_thread(_delete, app, self._session)

    async def _send_batch(self, batch: Sequence[tuple[str, Message]]) -> list[str | ChannelError]:
        """Send (token, message) pairs in one ``send_each_async``: each one's name or error."""
        outcomes: list[str | ChannelError | None] = []
        fcm_messages = []
        now = datetime.now(UTC)
        for token, message in batch:
            if isinstance(token, str) and token.strip():
                fcm_messages.append(_fcm_message(token, message, now))
                outcomes.append(None)
            else:  # the SDK would refuse the whole batch with a ValueError
                outcomes.append(
                    PermanentChannelError(
                        "fcm: empty device token", code="INVALID_ARGUMENT", rejected=(token,)
                    )
                )
        sendable = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if sendable:
            try:
                answer = await messaging.send_each_async(fcm_messages, app=self._app)
                for i, response in zip(sendable, answer.responses, strict=True):
                    outcomes[i] = (
                        str(response.message_id)
                        if response.success
                        else _map_error(response.exception, batch[i][0])
                    )
            except (fb_exceptions.FirebaseError, ValueError) as exc:
                error = _map_error(exc, None)
                for i in sendable:
                    outcomes[i] = error
        return [outcome for outcome in outcomes if outcome is not None]


def _fcm_message(token: str, message: Message, now: datetime) -> Any:
    """The FCM message for one device; ``now`` turns the expiry into a TTL."""
    high = message.priority == "high"
    headers = {"apns-push-type": "alert", "apns-priority": "10" if high else "5"}
    ttl: timedelta | None = None
    if message.expires_at is not None:
        ttl = max(timedelta(0), message.expires_at - now)
        # Whole seconds, rounded down: never promise a moment past the expiry.
        ttl = timedelta(seconds=int(ttl.total_seconds()))
        headers["apns-expiration"] = str(int(message.expires_at.timestamp()))
    if message.collapse_key:
        headers["apns-collapse-id"] = _collapse_id(message.collapse_key)
    # fid, not the deprecated token: firebase-admin 7.7 warns on Message(token=...).
    return messaging.Message(
        fid=token,
        notification=messaging.Notification(title=message.subject, body=message.body),
        data=dict(message.data),
        android=messaging.AndroidConfig(
            collapse_key=message.collapse_key,
            priority="high" if high else "normal",
            ttl=ttl,
        ),
        apns=messaging.APNSConfig(headers=headers),
    )


def _collapse_id(key: str) -> str:
    if len(key.encode()) <= _COLLAPSE_ID_BYTES:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def _point_at(app: Any, base_url: str, *, sdk_retries: bool, timeout: float) -> requests.Session:
    """Aim ``app``'s messaging service at ``base_url`` and set its retry policy.

    The one place that touches the SDK's private parts. The endpoint is
    ``_MessagingService.FCM_URL`` (a class attribute, read once in the
    service's ``__init__`` into ``self._fcm_url``). Setting the class
    attribute would move every app in the process, including other
    instances' and any created later; so each instance overwrites its own
    service's ``_fcm_url`` instead, keeping the path from ``FCM_URL``. Both
    private names are checked first: if a future SDK renames them this fails
    loudly here rather than quietly sending to Google.

    Retries live on the service's ``requests`` session (``_client.session``):
    an adapter mounted for ``base_url`` either reuses the SDK's own retry
    object (``sdk_retries=True``) or retries nothing. The sends go through
    the service's ``_async_client``; without ``sdk_retries`` it is replaced by
    one that sends each request once (``HttpxRetry(max_retries=0)``).
    """
    service = messaging._get_messaging_service(app)
    template = messaging._MessagingService.FCM_URL
    client = getattr(service, "_client", None)
    session = getattr(client, "session", None)
    if (
        not template.startswith(_GOOGLE + "/")
        or getattr(service, "_fcm_url", None) != template.format(app.project_id)
        or not isinstance(session, requests.Session)
        or not isinstance(getattr(service, "_async_client", None), _http_client.HttpxAsyncClient)
    ):
        raise RuntimeError(
            f"firebase-admin {firebase_admin.__version__} no longer keeps the FCM endpoint "
            "in _MessagingService._fcm_url / _client.session / _async_client; "
            "update channels/fcm_push.py"
        )
    service._fcm_url = base_url + template.removeprefix(_GOOGLE).format(app.project_id)
    sdk_adapter = session.get_adapter(template.format(app.project_id))
    retries: Retry | int = 0
    if sdk_retries and isinstance(sdk_adapter, requests.adapters.HTTPAdapter):
        retries = sdk_adapter.max_retries
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=_POOL_SIZE, pool_maxsize=_POOL_SIZE, max_retries=retries
    )
    # The longest matching prefix wins, so this beats the SDK's own mounts.
    session.mount(base_url + "/", adapter)
    if not sdk_retries:
        service._async_client = _http_client.HttpxAsyncClient(
            credential=service._credential,
            # A send waiting for a free connection is our queue, not FCM being slow.
            timeout=httpx.Timeout(timeout, pool=None),
            retry_config=HttpxRetry(max_retries=0),
        )
    return session


def _delete(app: Any, session: requests.Session) -> None:
    firebase_admin.delete_app(app)  # calls asyncio.run(): never from the event loop
    session.close()


def _result(tokens: Sequence[str], outcomes: dict[str, str | ChannelError]) -> SendResult:
    """The channel's answer from each token's outcome, in the order of ``tokens``."""
    names: list[str] = []
    errors: list[ChannelError] = []
    rejected: list[str] = []
    for token in tokens:
        outcome = outcomes[token]
        if isinstance(outcome, str):
            names.append(outcome)
            continue
        errors.append(outcome)
        if isinstance(outcome, PermanentChannelError) and token in outcome.rejected:
            rejected.append(token)
    transient = [e for e in errors if isinstance(e, TransientChannelError)]
    ambiguous = [e for e in errors if isinstance(e, AmbiguousChannelError)]
    if names:
        return SendResult(
            provider="fcm",
            provider_id=names[0],
            status="sent",
            detail={"accepted": len(names), "rejected": len(rejected), "transient": len(transient)},
            rejected=tuple(rejected),
        )
    first: ChannelError
    error: ChannelError
    ours = [e for e in errors if isinstance(e, ProviderChannelError)]
    if ours:
        # Our project or credentials are wrong: the other tokens' answers say nothing of them.
        first = ours[0]
        error = ProviderChannelError(f"fcm: no token accepted; {_tally(errors)}", code=first.code)
    elif ambiguous:
        # FCM may hold one of these pushes: sending again could be the second copy.
        first = ambiguous[0]
        error = AmbiguousChannelError(
            f"fcm: no answer after the request left; {_tally(errors)}", code=first.code
        )
    elif transient:
        first = transient[0]
        hints = [e.retry_after for e in transient if e.retry_after is not None]
        error = TransientChannelError(
            f"fcm: no token accepted; {_tally(errors)}",
            code=first.code,
            retry_after=max(hints) if hints else None,
        )
    else:
        # A message-level refusal (credentials, payload) outranks dead tokens.
        whole = [e for e in errors if isinstance(e, PermanentChannelError) and not e.rejected]
        first = whole[0] if whole else errors[0]
        error = PermanentChannelError(
            f"fcm: every token refused; {_tally(errors)}", code=first.code, rejected=tuple(rejected)
        )
    raise error from first.__cause__


def _tally(errors: Sequence[ChannelError]) -> str:
    counts: dict[str, int] = {}
    for error in errors:
        counts[error.code or "error"] = counts.get(error.code or "error", 0) + 1
    return ", ".join(f"{code}×{n}" for code, n in counts.items())


def _map_error(exc: BaseException, token: str | None) -> ChannelError:
    """Our error for an SDK error about ``token`` (None: the whole batch failed).

    The one place firebase-admin's exceptions become ours; the SDK error is
    kept as ``__cause__``, as ``raise ... from exc`` would.
    """
    blame = (token,) if token is not None else ()
    error: ChannelError
    if isinstance(exc, messaging.UnregisteredError):
        error = PermanentChannelError(
            "fcm: app instance unregistered", code="UNREGISTERED", rejected=blame
        )
    elif isinstance(exc, messaging.SenderIdMismatchError):
        error = ProviderChannelError(
            "fcm: token belongs to another sender (check the project id and credentials)",
            code="SENDER_ID_MISMATCH",
        )
    elif isinstance(exc, fb_exceptions.InvalidArgumentError):
        about_token = token is not None and _about_token(exc)
        error = PermanentChannelError(
            f"fcm: invalid {'token' if about_token else 'message'}: {exc}",
            code="INVALID_ARGUMENT",
            rejected=blame if about_token else (),
        )
    elif isinstance(exc, messaging.QuotaExceededError):
        hint = _retry_after(exc)
        error = TransientChannelError(
            f"fcm: quota exceeded: {exc}",
            code="QUOTA_EXCEEDED",
            retry_after=_QUOTA_BACKOFF if hint is None else hint,
        )
    elif isinstance(exc, fb_exceptions.UnknownError) and isinstance(
        exc.cause, google.auth.exceptions.RefreshError
    ):
        # A service account whose token cannot be fetched: retryable only if Google says so.
        refresh = exc.cause
        if getattr(refresh, "retryable", False):
            error = TransientChannelError(f"fcm: credential refresh: {refresh}", code="UNKNOWN")
        else:
            error = ProviderChannelError(
                f"fcm: credential refresh: {refresh}", code="UNAUTHENTICATED"
            )
    elif isinstance(exc, fb_exceptions.FirebaseError) and isinstance(exc.cause, _AFTER_WRITE):
        error = AmbiguousChannelError(
            f"fcm: no answer after the request left: {type(exc.cause).__name__}",
            code="no_answer",
        )
    elif isinstance(exc, _TRANSIENT) or _status(exc) >= 500:
        code = getattr(exc, "code", None) or "UNAVAILABLE"
        error = TransientChannelError(f"fcm: {exc}", code=str(code), retry_after=_retry_after(exc))
    elif isinstance(exc, messaging.ThirdPartyAuthError):
        error = ProviderChannelError(
            f"fcm: APNs/web push auth: {exc}", code="THIRD_PARTY_AUTH_ERROR"
        )
    elif isinstance(exc, fb_exceptions.UnauthenticatedError | fb_exceptions.PermissionDeniedError):
        error = ProviderChannelError(f"fcm: {exc}", code=str(exc.code))
    elif isinstance(exc, fb_exceptions.FirebaseError):
        # NOT_FOUND without UNREGISTERED, ...: the message, not the token; never blame one.
        error = PermanentChannelError(f"fcm: {exc}", code=str(exc.code))
    elif isinstance(exc, ValueError):
        error = PermanentChannelError(f"fcm: message refused by SDK: {exc}", code="INVALID_MESSAGE")
    else:
        raise TypeError(f"fcm: unexpected error from firebase-admin: {exc!r}") from exc
    error.__cause__ = exc
    return error


def _status(exc: BaseException) -> int:
    response = getattr(exc, "http_response", None)
    return int(getattr(response, "status_code", 0) or 0)


def _about_token(exc: BaseException) -> bool:
    """Whether an INVALID_ARGUMENT names the target rather than the payload."""
    if "registration token" in str(exc).lower():
        return True
    response = getattr(exc, "http_response", None)
    try:
        details = response.json()["error"].get("details", []) if response is not None else []
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return any(
        violation.get("field") in _TARGET_FIELDS
        for detail in details
        if isinstance(detail, dict) and detail.get("@type") == _BAD_REQUEST
        for violation in detail.get("fieldViolations", [])
        if isinstance(violation, dict)
    )


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from the response's ``Retry-After`` (delta or HTTP date), if any."""
    response = getattr(exc, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
