"""Producer callbacks: which URLs are taken, how a body is signed, how retries are spaced."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from notifier.flows.producer_callbacks import retry_delay
from notifier.settings import Settings
from notifier.webhooks import outbound
from notifier.webhooks.models import ProducerCallback
from notifier.webhooks.service import InvalidUrl, check_url, encode, signature_header


@pytest.mark.parametrize(
    ("url", "deployed", "problem"),
    [
        ("https://billing.example/notifier-events", True, None),
        ("https://billing.example:8443/hooks?source=notifier", True, None),
        ("http://billing.example/hooks", True, "https"),
        ("http://127.0.0.1:9000/hooks", False, "private"),  # embedded mode too
        ("https://user:pw@billing.example/hooks", True, "credentials"),
        ("https://token@billing.example/hooks", False, "credentials"),
        ("ftp://billing.example/hooks", False, "http"),
        ("https:///hooks", True, "host"),
        ("https://billing.example/hooks#part", True, "fragment"),
        ("https://127.0.0.1/hooks", True, "private"),
        ("https://10.1.2.3/hooks", True, "private"),
        ("https://169.254.169.254/latest", True, "private"),
        ("https://localhost/hooks", True, "private"),
        ("https://[::1]/hooks", True, "private"),
        ("https://nowhere.invalid/hooks", True, "does not resolve"),
        ("https://rebound.example/hooks", True, "loopback"),
        ("https://billing.example:99999/hooks", True, "not a URL"),
        ("https://billing.example/" + "a" * 2000, True, "longer"),
        ("https://billing.example/a b", True, "spaces"),
        ("https://billing.example/\x00", False, "control"),
    ],
)
def test_a_callback_url(url: str, deployed: bool, problem: str | None) -> None:
    if problem is None:
        assert check_url(url, deployed=deployed, resolver=DNS) == url
    else:
        with pytest.raises(InvalidUrl, match=problem):
            check_url(url, deployed=deployed, resolver=DNS)


def DNS(host: str, port: int) -> list[str]:
    """The names these tests use, as a DNS server would answer them; numbers as the OS reads them."""
    names = {
        "billing.example": ["93.184.215.14"],
        "rebound.example": ["93.184.215.14", "127.0.0.1"],
    }
    if host in names:
        return names[host]
    if host.endswith(".invalid"):
        raise OSError("Name or service not known")
    return outbound._system_resolver(host, port)


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_exact_body() -> None:
    callback = ProducerCallback(
        id=7, key_id=1, type="delivery.sent", body={"type": "delivery.sent", "bill_no": "B1"}
    )
    body = encode(callback)
    assert body == b'{"id":7,"type":"delivery.sent","bill_no":"B1"}'
    header = signature_header("whsec_test", body, 1795766400)
    expected = hmac.new(b"whsec_test", b"1795766400." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1795766400,v1={expected}"


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    settings = Settings(webhook_retry_base_seconds=10, webhook_retry_max_seconds=3600)
    for attempt, cap in [(1, 10), (2, 20), (3, 40), (9, 2560), (10, 3600), (30, 3600)]:
        delays = [retry_delay(settings, attempt) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (attempt, min(delays), max(delays))
