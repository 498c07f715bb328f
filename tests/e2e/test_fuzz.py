"""schemathesis against the served OpenAPI schema: no 5xx, no response that breaks the schema.

Bounded (``MAX_EXAMPLES`` per operation and generation mode) so it fits in CI:
``make test-fuzz``. It calls as an admin, so every operation gets past its role
check to the code behind it; valid and invalid input both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from services.api.app import create_app
from shared.settings import Settings
from tests.support.processes import free_port, served_api
from tests.support.servers import Servers, server_env

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = 40


def _operations() -> list[str]:
    """The operations the API declares, read from the app itself (to name the tests)."""
    app = create_app(Settings(kafka_bootstrap="unused", database_url="unused"))
    return [
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]


OPERATIONS = _operations()


@pytest.fixture(scope="session")
def fuzzed_api(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API process of its own, with no rate limit (a 429 would hide what lies behind it)."""
    port = free_port()
    env = server_env(servers, RETURNLOOP_API_PORT=str(port), RETURNLOOP_RATE_LIMIT_PER_MINUTE="0")
    log: Path = tmp_path_factory.mktemp("fuzzed-api") / "api.log"
    with served_api(env, log) as url:
        yield url


@pytest.fixture(scope="session")
def served_schema(fuzzed_api: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzzed_api}/openapi.json")


def test_the_served_schema_declares_the_operations_fuzzed_here(fuzzed_api: str) -> None:
    served = httpx.get(f"{fuzzed_api}/openapi.json", timeout=30).json()["paths"]

    assert sorted(
        f"{method.upper()} {path}" for path, operations in served.items() for method in operations
    ) == sorted(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_input_yields_a_server_error_or_an_answer_outside_the_schema(
    served_schema: schemathesis.BaseSchema,
    fuzzed_api: str,
    servers: Servers,
    label: str,
    mode: GenerationMode,
) -> None:
    operation = served_schema.find_operation_by_label(label)
    assert operation is not None, label
    headers = {"Authorization": f"Bearer {server_env(servers)['RETURNLOOP_ADMIN_TOKEN']}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=fuzzed_api,
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )

    try:
        call()
    except Unsatisfiable:
        # No invalid input exists for this operation: check that this is really so
        # (no body, and only free-text parameters), rather than skipping it.
        assert mode is GenerationMode.NEGATIVE, label
        method, path = label.split(" ", 1)
        served = httpx.get(f"{fuzzed_api}/openapi.json", timeout=30).json()
        definition = served["paths"][path][method.lower()]
        assert "requestBody" not in definition, label
        constrained = {"pattern", "minLength", "maxLength", "enum", "minimum", "maximum"}
        for parameter in definition.get("parameters", []):
            schema = parameter.get("schema", {})
            # Free text: a plain string, or an optional one (string or null).
            variants = schema.get("anyOf", [schema])
            assert {variant.get("type") for variant in variants} <= {"string", "null"}, (
                label,
                parameter["name"],
            )
            for variant in variants:
                assert not constrained & set(variant), (label, parameter["name"])
