"""Schemathesis against the API's own OpenAPI document, on running stacks.

Every operation gets generated requests, valid and invalid (wrong types,
missing fields, unknown fields, odd strings, huge numbers, no key or a wrong
one); each answer must not be a 5xx, must use a status code the document
declares for that operation, and must match the schema declared for that
code. SQLite and PostgreSQL refuse different things (a 64-bit id, a 32-bit
one, a NUL), so both are fuzzed. The run is bounded, examples per operation
and a fixed seed (derandomize), so that it is the same each time and short.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from notifier.app import create_app
from notifier.auth import keys
from notifier.escalation.models import Agent
from notifier.settings import PROJECT_ROOT, Settings
from tests.support.stack import Stack

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _openapi_document() -> dict[str, Any]:
    """The document the API serves at /openapi.json; building it opens no database."""
    return create_app(Settings(data_dir=PROJECT_ROOT / "var")).openapi()


schema = schemathesis.openapi.from_dict(_openapi_document())


@pytest.fixture
def fuzz_keys(stack: Stack) -> dict[str, dict[str, str]]:
    """An admin key for everything, and an agent's key for the agent's own list."""
    with stack.db() as session:
        agent = Agent(name="fuzz agent", area="fuzz", kind="field")
        session.add(agent)
        session.flush()
        _, admin = keys.create_key(session, role="admin", name="fuzz admin")
        _, mine = keys.create_key(session, role="agent", name="fuzz agent", agent_id=agent.id)
    return {
        "admin": {"Authorization": f"Bearer {admin}"},
        "agent": {"Authorization": f"Bearer {mine}"},
    }


@schema.parametrize()
@pytest.mark.parametrize("stack", ["sqlite-filesystem", "postgres-redis"], indirect=True)
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_openapi_document_says(
    case: Any, stack: Stack, fuzz_keys: dict[str, dict[str, str]]
) -> None:
    who = "agent" if case.path.startswith("/v1/escalations/mine") else "admin"
    case.call_and_validate(base_url=stack.base_url, headers=fuzz_keys[who], checks=CHECKS)


def test_the_served_document_is_the_one_fuzzed(stack: Stack) -> None:
    assert stack.client.get("/openapi.json").json() == _openapi_document()
