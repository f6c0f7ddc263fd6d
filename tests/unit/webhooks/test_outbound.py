"""Producer callbacks reach public addresses only, through the address that was checked,
and tell the producer what went wrong in a word, never in the answer's own words."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from notifier.webhooks import outbound
from notifier.webhooks.outbound import BlockedUrl, Target


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",  # 127.0.0.1 as one decimal number
        "127.1",
        "0x7f000001",
        "0",
        "localhost",
        "localhost.",
        "[::1]",
        "[::127.0.0.1]",  # IPv4-compatible
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[64:ff9b::7f00:1]",  # NAT64
        "[64:ff9b:1::a9fe:a9fe]",  # local-use NAT64
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "169.254.169.254",  # cloud metadata
        "2852039166",  # the same, in decimal
        "0xa9fea9fe",  # and in hex
        "[fd00:ec2::254]",  # AWS's IPv6 metadata address
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT
        "[fc00::1]",
        "[fe80::1]",
        "[fec0::1]",  # site-local
        "224.0.0.1",
        "[ff02::1]",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "[::]",
    ],
)
def test_every_form_of_a_non_public_address_is_refused(host: str) -> None:
    with pytest.raises(BlockedUrl) as refused:
        outbound.resolve(f"https://{host}/hooks", allow_private=False)

    assert refused.value.category == "blocked address"


@pytest.mark.parametrize("host", ["8.8.8.8", "[2001:4860:4860::8888]", "93.184.215.14"])
def test_public_addresses_are_taken(host: str) -> None:
    target = outbound.resolve(f"https://{host}:8443/hooks", allow_private=False)

    assert target.port == 8443 and len(target.addresses) == 1


def test_every_address_a_name_resolves_to_is_checked() -> None:
    def dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]  # a name with one public and one inside address

    with pytest.raises(BlockedUrl, match="private"):
        outbound.resolve("https://billing.example/hooks", allow_private=False, resolver=dns)


def test_a_name_that_does_not_resolve_is_its_own_category() -> None:
    with pytest.raises(BlockedUrl) as refused:
        outbound.resolve("https://no-such-host.invalid/hooks", allow_private=False)

    assert refused.value.category == "dns"


def test_private_addresses_are_taken_only_when_allowed() -> None:
    target = outbound.resolve("http://127.0.0.1:9/hooks", allow_private=True)
    assert target.addresses == ("127.0.0.1",)


# --- the POST ----------------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    host: str


@dataclass
class Server:
    """A local HTTP server that answers each path with a scripted status and a secret body."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    hang: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.seen.append(Seen(self.path, self.headers.get("Host", "")))
            if self.path == "/hang":
                state.hang.wait(5)
                return
            status = {"/ok": 204, "/down": 503, "/moved": 302}.get(self.path, 404)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/ok")
            body = b"postgres password: hunter2; internal stack trace"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.hang.set()
    httpd.shutdown()
    httpd.server_close()


def pinned(server: Server, path: str, *, scheme: str = "http") -> Target:
    """hooks.example, which resolved to this machine when it was checked."""
    return Target(
        url=f"{scheme}://hooks.example:{server.port}{path}",
        host="hooks.example",
        port=server.port,
        addresses=("127.0.0.1",),
    )


def test_the_post_goes_to_the_checked_address_with_the_name_as_host(server: Server) -> None:
    # hooks.example resolves nowhere here: a second lookup would fail, so none is made.
    answer = outbound.post(pinned(server, "/ok"), b"{}", {}, timeout=5)

    assert (answer.code, answer.category) == (204, None)
    assert server.seen == [Seen("/ok", f"hooks.example:{server.port}")]


def test_an_error_answer_is_a_category_and_its_body_is_never_read_back(server: Server) -> None:
    answer = outbound.post(pinned(server, "/down"), b"{}", {}, timeout=5)

    assert (answer.code, answer.category) == (503, "http 5xx")
    assert "hunter2" not in repr(answer)


def test_a_redirect_is_not_followed(server: Server) -> None:
    answer = outbound.post(pinned(server, "/moved"), b"{}", {}, timeout=5)

    assert (answer.code, answer.category) == (302, "redirect")
    assert [seen.path for seen in server.seen] == ["/moved"]


def test_a_closed_port_is_refused_and_tls_to_a_plain_server_is_tls(server: Server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the socket closes
    nobody = Target(f"http://hooks.example:{closed}/", "hooks.example", closed, ("127.0.0.1",))

    assert outbound.post(nobody, b"{}", {}, timeout=5).category == "refused"
    assert outbound.post(pinned(server, "/ok", scheme="https"), b"{}", {}, timeout=5).category == (
        "tls"
    )


def test_an_answer_that_never_comes_is_a_timeout(server: Server) -> None:
    answer = outbound.post(pinned(server, "/hang"), b"{}", {}, timeout=0.5)

    assert (answer.code, answer.category) == (None, "timeout")
