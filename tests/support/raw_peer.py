"""A TCP peer that takes one HTTP request and never answers it: the provider that got
the request and then went away (a disconnect or a reset after the request left)."""

from __future__ import annotations

import re
import socket
import threading

__all__ = ["RawPeer"]


class RawPeer:
    """A TCP peer that reads one HTTP request, then ``closes`` or ``resets`` without answering.

    (No connect timeout is staged here: a full listen backlog still completes the
    handshake on Linux, so the client sees a read timeout.)"""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                while length and len(body) < int(length[1]):
                    body += conn.recv(65536)
                self.requests += 1
                if self.behaviour == "resets":  # RST instead of FIN
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")

    def close(self) -> None:
        self.sock.close()
