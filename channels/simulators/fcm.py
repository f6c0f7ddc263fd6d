"""A local FCM HTTP v1 server for firebase-admin: ``POST /v1/projects/{p}/messages:send``.

It answers like Google's send endpoint
(https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send):
``200 {"name": "projects/{p}/messages/<id>"}`` on success, and errors in
Google's JSON shape, whose ``details`` decide which exception the SDK raises
(https://firebase.google.com/docs/cloud-messaging/error-codes)::

    {"error": {"code": 404, "message": "Requested entity was not found.",
               "status": "NOT_FOUND",
               "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                            "errorCode": "UNREGISTERED"}]}}

Magic device tokens (in ``message.fid`` or ``message.token``) fail on purpose:

=========================  ===========================================  ============================
token contains             answer                                       firebase-admin raises
=========================  ===========================================  ============================
``unregistered``           404 NOT_FOUND, errorCode UNREGISTERED        ``UnregisteredError``
``quota``                  429 RESOURCE_EXHAUSTED, QUOTA_EXCEEDED       ``QuotaExceededError``
                           (``quota-no-hint``: without Retry-After)
``unavailable``            503 UNAVAILABLE                              ``UnavailableError``
``invalid``                400 INVALID_ARGUMENT, "The registration      ``InvalidArgumentError``
                           token is not a valid FCM registration token"
``sender-mismatch``        403 PERMISSION_DENIED, errorCode              ``SenderIdMismatchError``
                           SENDER_ID_MISMATCH (another project's token,
                           or our project id is wrong)
``third-party-auth``       401 UNAUTHENTICATED, errorCode                ``ThirdPartyAuthError``
                           THIRD_PARTY_AUTH_ERROR (our APNs key)
``stall``                  accepted (recorded), then the answer waits   a timeout on the client
                           ``stall_seconds``: a push that went out
                           though the sender never heard so
=========================  ===========================================  ============================

Each accepted message is recorded with its ``android`` block and ``apns``
headers, as a device's platform would apply them (TTL, collapse key, priority).

``FaultMix.rate_limited`` answers the same 429 (with ``Retry-After``),
``FaultMix.server_error`` the same 503, and ``FaultMix.stalled`` accepts, then
stalls like a ``stall`` token, for any token; so do the next pushes after
:meth:`FcmSimulator.stall_next` (with ``token=``, the next ones to that
device). With ``access_token`` set, a request without ``Authorization:
Bearer <access_token>`` gets 401 UNAUTHENTICATED; with ``project`` set,
another project gets 403 PERMISSION_DENIED.

firebase-admin 7.7's ``send_each``/``send_each_async`` make one HTTP request per
message; the multipart ``/batch`` endpoint (``FCM_BATCH_URL``) is no
longer used by the SDK (Google shut it down in 2024), so it is not served.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any, ClassVar, NamedTuple, Self

from channels.simulators.base import FaultMix, HttpSimulator, JsonHandler

__all__ = ["FcmReceived", "FcmSimulator"]

_SEND_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_TARGETS = ("token", "fid", "topic", "condition")


class FcmReceived(NamedTuple):
    """One accepted message, as the device would get it."""

    token: str
    title: str | None
    body: str | None
    data: dict[str, str]
    android: dict[str, Any]
    """``ttl`` ("3600s"), ``collapse_key``, ``priority`` as sent."""
    apns_headers: dict[str, str]
    """``apns-expiration``, ``apns-collapse-id``, ``apns-priority``, ``apns-push-type``."""


def _error(
    code: int, status: str, message: str, fcm_code: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Google's error body; ``fcm_code`` adds the FcmError detail the SDK maps."""
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append({"@type": _FCM_ERROR, "errorCode": fcm_code})
    if extra.get("field"):
        details.append(
            {
                "@type": _BAD_REQUEST,
                "fieldViolations": [{"field": extra["field"], "description": message}],
            }
        )
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


_UNAUTHENTICATED = _error(
    401,
    "UNAUTHENTICATED",
    "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential.",
)
_QUOTA = _error(
    429,
    "RESOURCE_EXHAUSTED",
    "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
    "QUOTA_EXCEEDED",
)
_UNAVAILABLE = _error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE")
_UNREGISTERED = _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
_SENDER_MISMATCH = _error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")
_THIRD_PARTY_AUTH = _error(
    401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR"
)
_INVALID_TOKEN = _error(
    400,
    "INVALID_ARGUMENT",
    "The registration token is not a valid FCM registration token",
    "INVALID_ARGUMENT",
)


class _FcmHandler(JsonHandler):
    simulator: ClassVar[FcmSimulator]

    def do_POST(self) -> None:
        sim = self.simulator
        raw = self.body()  # read it whatever the answer, or keep-alive breaks
        with sim.lock:
            sim.requests += 1
        route = _SEND_PATH.match(self.path.split("?", 1)[0])
        if route is None:
            self.send_json(404, _error(404, "NOT_FOUND", f"Unknown path {self.path}."))
            return
        if not self._authorized():
            self.send_json(401, _UNAUTHENTICATED, {"WWW-Authenticate": 'Bearer realm="fcm"'})
            return
        project = route["project"]
        if sim.project is not None and project != sim.project:
            denied = f"Permission 'cloudmessaging.messages.create' denied on project {project}."
            self.send_json(403, _error(403, "PERMISSION_DENIED", denied))
            return
        sim.faults.pause()
        fault = sim.faults.draw()
        if fault == "server_error":
            self.send_json(503, _UNAVAILABLE)
            return
        if fault == "rate_limited":
            self.send_json(429, _QUOTA, {"Retry-After": str(sim.retry_after_seconds)})
            return
        status, payload, headers = self._send(project, raw)
        if status == 200 and fault == "stalled":
            time.sleep(sim.stall_seconds)  # accepted: the push is out, the answer is late
        self.send_json(status, payload, headers)

    def _authorized(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        expected = self.simulator.access_token
        return expected is None or token == expected

    def _send(self, project: str, raw: bytes) -> tuple[int, Any, dict[str, str] | None]:
        try:
            message = json.loads(raw)["message"]
            assert isinstance(message, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            bad = _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", field="message")
            return 400, bad, None
        targets = [message[key] for key in _TARGETS if key in message]
        if len(targets) != 1 or not isinstance(targets[0], str) or not targets[0]:
            unset = _error(
                400, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT",
                field="message",
            )  # fmt: skip
            return 400, unset, None
        data = message.get("data") or {}
        for index, (key, value) in enumerate(data.items()):
            if not isinstance(key, str) or not isinstance(value, str):
                text = f"Invalid value at 'message.data[{index}].value' (TYPE_STRING)"
                return (
                    400,
                    _error(400, "INVALID_ARGUMENT", text, field=f"message.data[{index}].value"),
                    None,
                )
        token = targets[0]
        if "unregistered" in token:
            return 404, _UNREGISTERED, None
        if "quota" in token:
            # FCM often sends no Retry-After at all: "quota-no-hint" answers that way.
            hint = None if "no-hint" in token else str(self.simulator.retry_after_seconds)
            return 429, _QUOTA, {"Retry-After": hint} if hint else None
        if "unavailable" in token:
            return 503, _UNAVAILABLE, None
        if "invalid" in token:
            return 400, _INVALID_TOKEN, None
        if "sender-mismatch" in token:
            return 403, _SENDER_MISMATCH, None
        if "third-party-auth" in token:
            return 401, _THIRD_PARTY_AUTH, None
        notification = message.get("notification") or {}
        received = FcmReceived(
            token,
            notification.get("title"),
            notification.get("body"),
            dict(data),
            dict(message.get("android") or {}),
            dict((message.get("apns") or {}).get("headers") or {}),
        )
        sim = self.simulator
        with sim.lock:
            sim.received.append(received)
            number = next(sim._ids)
        if "stall" in token or sim.take_stall(token):
            time.sleep(sim.stall_seconds)  # accepted: the push is out, the answer is late
        return 200, {"name": f"projects/{project}/messages/0:{number:016d}%fcmsim"}, None


class FcmSimulator(HttpSimulator):
    """FCM HTTP v1 send endpoint on 127.0.0.1; ``received`` lists accepted messages."""

    handler = _FcmHandler
    retry_after_seconds: ClassVar[int] = 1
    """The ``Retry-After`` sent with each 429."""
    stall_seconds: ClassVar[float] = 2.0
    """How long a ``stall`` token's accepted send waits before it is answered."""

    def __init__(
        self,
        *,
        access_token: str | None = None,
        project: str | None = None,
        faults: FaultMix | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(faults=faults, host=host, port=port)
        self.access_token = access_token
        self.project = project
        self.received: list[FcmReceived] = []
        """Accepted messages in arrival order; append and read under ``lock``."""
        self.requests = 0
        """Every HTTP request seen, failures and SDK retries included."""
        self._ids = itertools.count(1)
        self._stalls: list[str | None] = []
        """The device tokens whose next push stalls (None: any), in the order asked."""

    def reset(self) -> None:
        """Forget what was received and counted (one simulator shared by many tests)."""
        with self.lock:
            self.received.clear()
            self.requests = 0
            self._stalls.clear()

    def stall_next(self, count: int = 1, *, token: str | None = None) -> None:
        """Accept the next ``count`` pushes, then hold each answer ``stall_seconds``.

        ``token``: only pushes to that device stall (a simulator shared by many
        stacks gets pushes from all of them).
        """
        with self.lock:
            self._stalls.extend([token] * count)

    def take_stall(self, token: str) -> bool:
        """Whether this accepted push to ``token`` is one :meth:`stall_next` asked to stall."""
        with self.lock:
            for index, wanted in enumerate(self._stalls):
                if wanted is None or wanted == token:
                    del self._stalls[index]
                    return True
            return False

    def tokens(self) -> list[str]:
        """The device tokens of the accepted messages, in arrival order."""
        with self.lock:
            return [item.token for item in self.received]

    def __enter__(self) -> Self:
        self.start()
        return self
