"""What every HTTP simulator shares: a threaded server, latency, a failure mix."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

__all__ = ["FaultMix", "HttpSimulator", "JsonHandler"]


@dataclass
class FaultMix:
    """Probabilities of injected failures per request, and a fixed latency.

    ``server_error`` answers 5xx, ``rate_limited`` answers 429; ``stalled``
    accepts the send (it is recorded and goes on as usual) and then holds the
    answer past the client's timeout; ``dropped`` holds the answer the same
    way but drops the send (where the simulator can: Twilio); the rest of the
    requests are served normally after ``latency_ms``.
    """

    latency_ms: float = 0.0
    server_error: float = 0.0
    rate_limited: float = 0.0
    stalled: float = 0.0
    dropped: float = 0.0
    seed: int | None = None
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def pause(self) -> None:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)

    def draw(self) -> str | None:
        """``"server_error"``, ``"rate_limited"``, ``"stalled"``, ``"dropped"`` or None."""
        roll = self._random.random()
        if roll < self.server_error:
            return "server_error"
        if roll < self.server_error + self.rate_limited:
            return "rate_limited"
        if roll < self.server_error + self.rate_limited + self.stalled:
            return "stalled"
        if roll < self.server_error + self.rate_limited + self.stalled + self.dropped:
            return "dropped"
        return None


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler with JSON helpers; Nagle off so keep-alive does not stall."""

    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    simulator: ClassVar[HttpSimulator]

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: tests and benchmarks read the simulator's records instead

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 throttles concurrent clients (FIELD-NOTES).
    request_queue_size = 1024


class HttpSimulator:
    """Run ``handler`` on 127.0.0.1 in a background thread: ``start()`` → base URL."""

    handler: ClassVar[type[JsonHandler]]

    def __init__(
        self, *, faults: FaultMix | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.faults = faults or FaultMix()
        self.host, self.port = host, port
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "simulator not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> str:
        handler = type(f"{type(self).__name__}Handler", (self.handler,), {"simulator": self})
        self._server = _Server((self.host, self.port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
