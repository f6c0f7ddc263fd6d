"""Log lines: JSON when deployed, text when embedded, and nothing personal or secret in either."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from notifier.observability.logs import (
    AccessLog,
    JsonFormatter,
    MaskingFilter,
    TextFormatter,
    mask_text,
    secret_values,
    wants_json,
)
from notifier.settings import PROJECT_ROOT, Settings, TwilioSettings

SECRET = "tw-auth-7f3a9c2e"


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own writing through the masking filter into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(MaskingFilter([SECRET]))
    logger = logging.getLogger(f"notifier.test_logs.{id(out)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out, handler
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_process_message_and_the_extras(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, _ = capture
    logger.info(
        "delivery %s: %s",
        12,
        "sent",
        extra={"delivery_id": 12, "notification_id": 7, "channel": "sms", "status": "sent"},
    )
    [line] = lines(out)
    assert line["level"] == "INFO"
    assert line["logger"] == logger.name
    assert line["process"] == os.getpid()
    assert line["message"] == "delivery 12: sent"
    assert (line["delivery_id"], line["notification_id"], line["channel"], line["status"]) == (
        12,
        7,
        "sms",
        "sent",
    )
    assert line["time"].endswith("Z")
    stamp = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("calling +886912345678 now", "calling +886 912 ***678 now"),
        ("calling +886 912 345 678 now", "calling +886 912 ***678 now"),
        ("手機0912345678無法接通", "手機+886 912 ***678無法接通"),
        ("mobile 0912-345-678", "mobile +886 912 ***678"),
        ("office (02) 2345-6789", "office +886 223 ***789"),
        ("office 02-23456789.", "office +886 223 ***789."),
        ("to alice.wang@example.com: 550", "to a***@example.com: 550"),
        (f"token {SECRET} refused", "token *** refused"),
        ("key ntf_Zr4kP9x_Qw2-mN8vB7cX1yL0aS3dF6gH5jK4lM2nB9", "key ntf_***"),
        (
            "broker amqp://notifier:s3cret@rabbitmq:5672//",
            "broker amqp://notifier:***@rabbitmq:5672//",
        ),
    ],
)
def test_phone_numbers_emails_secrets_and_keys_are_masked_in_messages(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler], text: str, masked: str
) -> None:
    logger, out, _ = capture
    logger.warning("%s", text)
    assert lines(out)[0]["message"] == masked


@pytest.mark.parametrize(
    "text",
    [
        "account 01234567890",  # 11 digits: an account number, not a phone
        "bill B202609-01234567890",
        "delivery 123456 after 2026-11-27T09:00:00+08:00",
        "event billing-20261127-000123",
        "sid SM0912345678abcdef0912345678abcdef",
        "retry in 0.0912345678 s",
        "key prefix ntf_Zr4kP9",  # what `keys list` shows: not the key
    ],
)
def test_ids_dates_and_key_prefixes_are_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_extras_are_masked_by_pattern_and_by_name(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, _ = capture
    logger.info(
        "sent",
        extra={
            "to": ["+886912345678", "bob@example.org"],
            "detail": {"error": f"21211: +886912345678 refused; auth {SECRET}"},
            "account_no": "01234567890",
            "customer_name": "王小明",
            "address": "苗栗縣頭份市中正路1號",
            "api_key": "ntf_Zr4kP9x_Qw2-mN8vB7cX1yL0aS3dF6gH5jK4lM2nB9",
            "provider_id": "1764.d12@notices.utility.example",
            "attempt": 2,
        },
    )
    [line] = lines(out)
    assert line["to"] == ["+886 912 ***678", "b***@example.org"]
    assert line["detail"] == {"error": "21211: +886 912 ***678 refused; auth ***"}
    assert line["account_no"] == "012****7890"
    assert line["customer_name"] == "***"
    assert line["address"] == "苗栗縣頭份市…"
    assert line["api_key"] == "ntf_***"
    assert line["provider_id"] == "1764.d12@notices.utility.example"  # a Message-ID, not a person
    assert line["attempt"] == 2


def test_tracebacks_are_masked(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, _ = capture
    try:
        raise RuntimeError(f"smtp: 550 <carol@example.com> rejected (password {SECRET})")
    except RuntimeError:
        logger.exception("send failed")
    [line] = lines(out)
    assert "RuntimeError: smtp: 550 <c***@example.com> rejected (password ***)" in line["exc"]
    assert "carol" not in out.getvalue() and SECRET not in out.getvalue()


def test_secret_settings_are_collected_for_masking() -> None:
    settings = Settings(
        twilio=TwilioSettings(auth_token=SecretStr(SECRET)),
        metrics_token=SecretStr("scrape-token-1"),
        pay_link_key=SecretStr("pay-link-key-2"),
    )
    found = secret_values(settings)
    assert {SECRET, "scrape-token-1", "pay-link-key-2"} <= set(found)
    assert "" not in found


def test_text_when_embedded_json_when_deployed_and_the_variable_overrides() -> None:
    embedded = Settings(mode="embedded")
    deployed = Settings(mode="deployed", pay_link_key=SecretStr("a-real-pay-link-key"))
    assert not wants_json(embedded)
    assert wants_json(deployed)
    assert wants_json(Settings(mode="embedded", log_format="json"))
    assert not wants_json(
        Settings(mode="deployed", pay_link_key=SecretStr("a-real-pay-link-key"), log_format="text")
    )


def test_a_text_line_is_one_readable_line(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, handler = capture
    handler.setFormatter(TextFormatter())
    logger.info(
        "delivery %s: %s to %s",
        5,
        "sent",
        "+886912345678",
        extra={"delivery_id": 5, "provider": "sandbox", "note": "two words"},
    )
    text = out.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO notifier\.test_logs\.\d+ \[\d+\] "
        r"delivery 5: sent to \+886 912 \*\*\*678 "
        r'delivery_id=5 provider=sandbox note="two words"\n',
        text,
    ), text


def test_the_access_log_has_no_query_string_and_masks_account_numbers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()

    @app.get("/v1/accounts/{account_no}")
    def account(account_no: str) -> dict[str, str]:
        return {"account_no": account_no}

    app.add_middleware(AccessLog)
    transport = httpx.ASGITransport(app=app)

    async def call() -> int:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.get("/v1/accounts/01234567890?token=ntf_Zr4kP9x_Qw2-mN8vB7cX1yL0")
            return answer.status_code

    with caplog.at_level(logging.INFO, logger=AccessLog.logger):
        assert asyncio.run(call()) == 200
    [record] = [r for r in caplog.records if r.name == AccessLog.logger]
    assert record.getMessage().startswith("GET /v1/accounts/012****7890 200 ")
    assert record.path == "/v1/accounts/012****7890"  # type: ignore[attr-defined]
    assert record.route == "/v1/accounts/{account_no}"  # type: ignore[attr-defined]
    assert record.status == 200  # type: ignore[attr-defined]
    assert "token" not in record.getMessage()


def test_the_celery_worker_logs_json_lines_through_our_handler() -> None:
    """Celery's own set-up (what `celery worker` runs) hands the root logger to us."""
    script = (
        "import logging\n"
        "from notifier.worker.app import celery_app\n"
        "celery_app.log.setup(loglevel='INFO')\n"
        "logging.getLogger('celery.apps.worker').info('celery@test ready.')\n"
        "logging.getLogger('notifier.flows.deliver').info('to +886912345678')\n"
        "print('access log off:', logging.getLogger('uvicorn.access').disabled)\n"
    )
    env = {
        **os.environ,
        "NOTIFIER_MODE": "deployed",
        "NOTIFIER_PAY_LINK_KEY": "a-real-pay-link-key",
        "NOTIFIER_LOG_FORMAT": "",
        "NOTIFIER_LOG_LEVEL": "INFO",
        "NOTIFIER_DATA_DIR": "/tmp/notifier-test-logs",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    by_logger = {r["logger"]: r for r in records}
    assert by_logger["celery.apps.worker"]["message"] == "celery@test ready."
    assert by_logger["notifier.flows.deliver"]["message"] == "to +886 912 ***678"
    assert "access log off: True" in done.stdout


@given(
    st.text(
        alphabet=st.sampled_from(list("0123456789+-() ./@:_ntfabcXY王\n")), min_size=0, max_size=40
    )
)
def test_text_the_quick_look_passes_by_would_have_come_out_unchanged_anyway(text: str) -> None:
    # mask_text skips its patterns when none could match: never a line they would change.
    from notifier.observability import logs

    assert mask_text(text) == logs._masked(text, emails=True)
    assert mask_text(text, emails=False) == logs._masked(text, emails=False)
