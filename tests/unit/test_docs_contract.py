"""The docs' events are events the API takes: every JSON example of an event anywhere in
docs/ and the README passes the API's own model, the producer contract shows each event
type, and one event shown on several pages is the same event everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from notifier.events.schema import EVENT_TYPES, parse_event
from notifier.settings import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
PAGES = [PROJECT_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def json_blocks(page: Path) -> list[Any]:
    return [
        json.loads(block)
        for block in re.findall(
            r"^```json\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M
        )
    ]


def shell_events(page: Path) -> list[Any]:
    """The bodies of the curl examples (``-d @- <<'JSON' ... JSON``)."""
    text = page.read_text(encoding="utf-8")
    return [json.loads(body) for body in re.findall(r"<<'JSON'\n(.*?)^JSON$", text, re.S | re.M)]


def documented_events() -> list[tuple[str, dict[str, Any]]]:
    return [
        (page.name, example)
        for page in PAGES
        for example in json_blocks(page) + shell_events(page)
        if isinstance(example, dict)
        and example.get("type") in EVENT_TYPES
        and "event_id" in example
    ]


@pytest.mark.parametrize(
    ("page", "event"), documented_events(), ids=lambda v: v if isinstance(v, str) else v["event_id"]
)
def test_a_documented_event_is_one_the_api_takes(page: str, event: dict[str, Any]) -> None:
    parsed = parse_event(event)
    assert parsed.type == event["type"]


def test_the_producer_contract_shows_every_event_type() -> None:
    text = (DOCS / "producer-contract.md").read_text(encoding="utf-8")
    catalogue = text.split("## Every event type", 1)[1].split("\n## ", 1)[0]
    sections = re.split(r"^### `([a-z._]+)`\n", catalogue, flags=re.M)[1:]
    shown = dict(zip(sections[::2], sections[1::2], strict=True))
    assert list(shown) == [
        "bill.issued", "bill.unpaid", "usage.abnormal", "bill.paid", "bill.payment_reversed",
        "account.suspended", "account.reconnected",
    ]  # fmt: skip
    assert set(shown) == set(EVENT_TYPES)
    for kind, body in shown.items():
        examples = [json.loads(b) for b in re.findall(r"^```json\n(.*?)^```", body, re.S | re.M)]
        # The story may go on under a section (paid in full after the reversal).
        assert examples and examples[0]["type"] == kind, kind


def test_one_event_id_is_one_event_on_every_page() -> None:
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for page, event in documented_events():
        first = seen.setdefault(event["event_id"], (page, event))
        assert parse_event(event) == parse_event(first[1]), (
            f"{event['event_id']}: {page} and {first[0]} show different events"
        )
    quickstart = shell_events(DOCS / "quickstart.md")
    assert [e["event_id"] for e in quickstart] == ["billing-20261127-000123"]
    assert "billing-20261127-000123" in {
        e["event_id"] for e in json_blocks(DOCS / "producer-contract.md")
    }
