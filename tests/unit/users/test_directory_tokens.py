"""The directory's ID token is believed only when signed by its JWKS and meant for us, now.

Tokens are signed here with joserfc and the key set is served over HTTP on
127.0.0.1, as a directory serves its ``jwks_uri``; each case breaks one thing.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from pydantic import SecretStr

from notifier.settings import OidcSettings
from notifier.users import directory

ISSUER = "https://login.utility.example/realms/staff"
CLIENT = "notifier"
NONCE = "n-0S6_WzA2Mj"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})


@pytest.fixture(scope="module")
def jwks_uri() -> Iterator[str]:
    body = json.dumps(KeySet([KEY]).as_dict(private=False)).encode()

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "sub": "u-42", "aud": CLIENT, "iat": now, "exp": now + 300}
    base["nonce"] = NONCE
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any], key: RSAKey = KEY, alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": "k1"}, payload, key)


def verify(jwks_uri: str, token: str, nonce: str = NONCE) -> dict[str, Any]:
    oidc = OidcSettings(issuer=ISSUER, client_id=CLIENT, client_secret=SecretStr("s"))
    metadata = {"issuer": ISSUER, "jwks_uri": jwks_uri}
    return directory._verified(oidc, metadata, token, {}, nonce)


def test_a_token_signed_by_the_directory_for_us_is_believed(jwks_uri: str) -> None:
    assert verify(jwks_uri, signed(claims()))["sub"] == "u-42"


@pytest.mark.parametrize(
    ("case", "token"),
    [
        ("signed by another key", lambda: signed(claims(), STRANGER)),
        ("another issuer", lambda: signed(claims(iss="https://evil.example"))),
        ("for another client", lambda: signed(claims(aud="someone-else"))),
        ("expired", lambda: signed(claims(exp=int(time.time()) - 3600))),
        ("no expiry", lambda: signed(claims(exp=None))),
        ("no nonce", lambda: signed(claims(nonce=None))),
        ("another sign-in's nonce", lambda: signed(claims(nonce="replayed"))),
    ],
)
def test_a_token_that_is_not_the_directorys_answer_to_us_is_refused(
    jwks_uri: str, case: str, token: Any
) -> None:
    with pytest.raises(directory.DirectoryRefused) as refused:
        verify(jwks_uri, token())
    assert refused.value.reason == "failed", case


def test_an_unsigned_token_is_refused(jwks_uri: str) -> None:
    header = {"alg": "none", "kid": "k1"}

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    with pytest.raises(directory.DirectoryRefused):
        verify(jwks_uri, f"{part(header)}.{part(claims())}.")
