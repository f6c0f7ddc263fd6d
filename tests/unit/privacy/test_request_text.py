"""Request bodies: unknown fields refused everywhere; odd Unicode refused or cleaned per field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from notifier.app import create_app
from notifier.events.schema import AccountIn, EventIn, field_errors
from notifier.settings import PROJECT_ROOT, Settings

ACCOUNT_NO = "01234567890"


def _account(**fields: Any) -> AccountIn:
    return AccountIn.model_validate({"account_no": ACCOUNT_NO, **fields})


def _refusal(**fields: Any) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        _account(**fields)
    [error] = field_errors(caught.value)
    return error.field, error.message


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("name", "王\x00小明", "NUL character (U+0000)"),
        ("name", "王\ud800小明", "lone surrogate (U+D800)"),
        ("name", "王小明\x1b[31m", "control character (U+001B)"),
        ("name", "王\n小明", "control character (U+000A)"),
        ("name", "王\x85小明", "control character (U+0085)"),
        ("name", "王小明\u202egnp.exe", "bidirectional override (U+202E)"),
        ("name", "\u2066王小明\u2069", "bidirectional override (U+2066)"),
        ("address", "苗栗縣\x00頭份市", "NUL character (U+0000)"),
        ("address", "苗栗縣\u202d頭份市", "bidirectional override (U+202D)"),
        ("address", "苗栗縣\x07頭份市", "control character (U+0007)"),
        ("area", "toufen\x00", "NUL character (U+0000)"),
    ],
)
def test_what_cannot_be_shown_is_refused_naming_the_field(field: str, value: str, why: str) -> None:
    named, message = _refusal(**{field: value})
    assert named == field
    assert message.startswith(f"contains a {why}")


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("name", "王\u200b小明", "王小明"),  # zero-width space
        ("name", "\ufeff王小明\u200d", "王小明"),  # BOM, zero-width joiner
        ("name", "Jose\u0301", "José"),  # NFC: one spelling
        ("name", "  王小明  ", "王小明"),
        ("address", "苗栗縣頭份市\r\n中正路 1 號", "苗栗縣頭份市 中正路 1 號"),
        ("address", "苗栗縣\t頭份市\u200e", "苗栗縣 頭份市"),
        ("area", "tou\u200bfen", "toufen"),
    ],
)
def test_invisible_characters_are_removed_and_text_normalised(
    field: str, value: str, stored: str
) -> None:
    assert getattr(_account(**{field: value}), field) == stored


def test_every_string_of_an_event_must_be_storable() -> None:
    event = {
        "event_id": "e-1",
        "type": "bill.unpaid",
        "occurred_at": "2026-11-27T09:00:00+08:00",
        "account": {"account_no": ACCOUNT_NO, "push_tokens": ["ok", "bad\x00"]},
        "bill": {"bill_no": "B\ud83d", "period": "2026-09", "amount": 1, "due_date": "2026-11-20"},
    }
    with pytest.raises(ValidationError) as caught:
        EventIn.model_validate(event)
    fields = {e.field for e in field_errors(caught.value)}
    assert fields == {"account.push_tokens", "bill.bill_no"}


def test_a_field_name_that_is_not_text_is_refused_and_the_answer_still_encodes() -> None:
    with pytest.raises(ValidationError) as caught:
        _account(**{"nick\ud800": "x"})
    [error] = field_errors(caught.value)
    assert error.field == "(body)"
    assert "\ud800" not in error.model_dump_json()


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _objects(document: dict[str, Any], schema: dict[str, Any], seen: set[str]) -> list[str]:
    """Names of object schemas reachable from ``schema`` that allow unknown properties."""
    loose: list[str] = []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
        target = _resolve(document, schema)
        if target.get("type") == "object" and target.get("additionalProperties") is not False:
            loose.append(name)
        schema = target
    for sub in (*schema.get("properties", {}).values(), *schema.get("anyOf", [])):
        loose += _objects(document, sub, seen)
    if isinstance(schema.get("items"), dict):
        loose += _objects(document, schema["items"], seen)
    return loose


def test_every_json_request_body_refuses_unknown_fields() -> None:
    document = create_app(Settings(data_dir=PROJECT_ROOT / "var")).openapi()
    bodies = [
        (f"{method.upper()} {path}", content["application/json"]["schema"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "application/json" in (content := operation.get("requestBody", {}).get("content", {}))
    ]
    assert len(bodies) >= 5, bodies  # events, batch, outcome, assign, sweeps at least
    loose = {label: _objects(document, schema, set()) for label, schema in bodies}
    assert {label: names for label, names in loose.items() if names} == {}
