"""The served OpenAPI says what every JSON operation answers, and the loop view is the contract's.

Without a response model FastAPI documents an answer as "any object", and the schema
fuzzing (tests/e2e/test_fuzz.py) then has nothing to check the answer against.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.api.app import create_app
from services.api.models import LoopView
from shared.adapters.postgres.read_model import loop_view
from shared.adapters.postgres.unit_of_work import checkpoint_to_json
from shared.domain.model import Checkpoint
from shared.domain.vocabulary import AlertKind, HealthCode, HealthCodeSource, Kind, Stage, Status
from shared.settings import Settings

# PRODUCT.md, "HTTP API": the loop view, a checkpoint in it, an alert in it.
LOOP_VIEW_FIELDS = {
    "worker_ref",
    "id_masked",
    "name",  # contract v1.1: the manifest's name beside the masked ID
    "enterprise_id",
    "trip_id",
    "travel",  # contract v1.1: organised or self
    "dispositions",  # contract v1.1: what was recorded after a failed check
    "stage",
    "status",
    "health_code",
    "checkpoints",
    "alerts",
    "updated_at",
}
CHECKPOINT_FIELDS = {"at", "passed", "station"}
ALERT_FIELDS = {"kind", "raised_at", "open", "closed_at"}
# JSON operations outside /v1 (/metrics is Prometheus text; the pages are HTML).
UNVERSIONED_JSON = {"/healthz", "/readyz"}
# Operations under /v1 that answer a file, never JSON (the manifest template: CSV or XLSX).
FILES_ONLY = {"GET /v1/manifests/template"}


def _openapi() -> dict[str, Any]:
    app = create_app(Settings(kafka_bootstrap="unused", database_url="unused"))
    spec: dict[str, Any] = app.openapi()
    return spec


SPEC = _openapi()
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
JSON_OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, operations in SPEC["paths"].items()
    if path.startswith("/v1/") or path in UNVERSIONED_JSON
    for method in operations
    if f"{method.upper()} {path}" not in FILES_ONLY
)


def resolved(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a ``$ref`` names (or the schema itself)."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    assert ref.startswith("#/components/schemas/"), ref
    return resolved(SCHEMAS[ref.removeprefix("#/components/schemas/")])


def enum_of(schema: dict[str, Any]) -> set[str]:
    return set(resolved(schema)["enum"])


def test_the_operations_are_found() -> None:
    assert "POST /v1/workers/lookup" in JSON_OPERATIONS
    assert {"GET /healthz", "GET /readyz"} <= set(JSON_OPERATIONS)
    assert "GET /metrics" not in JSON_OPERATIONS


@pytest.mark.parametrize("label", JSON_OPERATIONS)
def test_every_json_operation_declares_what_its_success_answers(label: str) -> None:
    method, path = label.split(" ", 1)
    responses = SPEC["paths"][path][method.lower()]["responses"]
    successes = {status: answer for status, answer in responses.items() if status.startswith("2")}
    assert successes, f"{label}: no 2xx response declared"
    for status, answer in successes.items():
        schema = answer.get("content", {}).get("application/json", {}).get("schema")
        assert schema, f"{label} {status}: no JSON schema"
        # "Any object" ({} or {"type": "object", "additionalProperties": true}) says nothing.
        assert "$ref" in schema or "properties" in schema, f"{label} {status}: {schema}"
        assert resolved(schema).get("properties"), f"{label} {status}: no properties"


def _success_schema(method: str, path: str) -> dict[str, Any]:
    responses = SPEC["paths"][path][method]["responses"]
    status = next(status for status in responses if status.startswith("2"))
    schema: dict[str, Any] = responses[status]["content"]["application/json"]["schema"]
    return schema


def test_the_loop_view_lists_the_contracts_fields_and_their_values() -> None:
    view = SCHEMAS["LoopView"]

    assert set(view["properties"]) >= LOOP_VIEW_FIELDS
    assert set(view["required"]) >= LOOP_VIEW_FIELDS
    properties = view["properties"]
    assert enum_of(properties["stage"]) == {stage.value for stage in Stage}
    assert enum_of(properties["status"]) == {status.value for status in Status}
    colours = [variant for variant in properties["health_code"]["anyOf"] if "$ref" in variant]
    assert enum_of(colours[0]) == {colour.value for colour in HealthCode}

    checkpoints = properties["checkpoints"]
    assert enum_of(checkpoints["propertyNames"]) == {kind.value for kind in Kind}
    checkpoint = resolved(checkpoints["additionalProperties"])
    assert set(checkpoint["required"]) == CHECKPOINT_FIELDS
    assert set(checkpoint["properties"]) >= CHECKPOINT_FIELDS | {
        "scan_id",
        "temperature_c",
        "health_code",
        "trip_id",
        "enterprise_id",
        "health_code_source",
        "override_reason",
    }
    sources = checkpoint["properties"]["health_code_source"]["anyOf"]
    assert enum_of(sources[0]) == {source.value for source in HealthCodeSource}
    assert checkpoint["additionalProperties"] is True  # later fields pass through

    alert = resolved(properties["alerts"]["items"])
    assert set(alert["required"]) == ALERT_FIELDS
    assert enum_of(alert["properties"]["kind"]) == {kind.value for kind in AlertKind}


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("post", "/v1/workers/lookup", None),
        ("get", "/v1/workers/{worker_ref}", None),
        ("post", "/v1/links/resolve", "loop"),
        ("post", "/v1/gate/decision", "loop"),
    ],
)
def test_every_answer_with_a_loop_view_names_the_one_model(
    method: str, path: str, field: str | None
) -> None:
    schema = _success_schema(method, path)
    if field is not None:
        schema = resolved(schema)["properties"][field]
    assert schema == {"$ref": "#/components/schemas/LoopView"}


def _jsonb_order(body: dict[str, Any]) -> dict[str, Any]:
    """The key order PostgreSQL's jsonb gives back: shorter keys first, then bytewise."""
    return dict(sorted(body.items(), key=lambda item: (len(item[0].encode()), item[0].encode())))


def _stored_view() -> dict[str, Any]:
    """A loop view as the read model builds it, checkpoints as the tracker stores them."""
    departure = checkpoint_to_json(
        Checkpoint(
            scan_id="dep-1",
            at=datetime(2020, 3, 1, 14, 0, tzinfo=UTC),
            passed=True,
            station="recruitment-team-guizhou",
            temperature_c=36.5,
            health_code=HealthCode.GREEN,
            health_code_source=HealthCodeSource.SCANNED,
        )
    )
    boarding = checkpoint_to_json(
        Checkpoint(
            scan_id="brd-1",
            at=datetime(2020, 3, 1, 15, 0, 0, 123456, tzinfo=UTC),
            passed=False,
            station="bus-door-3",
            trip_id="bus-guiyang-ningbo-0302",
            override_reason="the clearance is still in the scanner's offline queue",
        )
    )
    worker = {
        "worker_ref": "w_" + "0" * 24,
        "id_masked": "520502********1234",
        "name": "Wang Fang",
        "travel": "organised",
        "enterprise_id": "yinzhou-textile",
        "trip_id": None,
        "boarded_trip_id": "bus-guiyang-ningbo-0302",
        "stage": Stage.DEPARTURE_CLEARED.value,
        "status": Status.BROKEN.value,
        "health_code": None,
        "checkpoints": _jsonb_order(
            {
                Kind.DEPARTURE_CHECK.value: _jsonb_order(departure),
                Kind.BOARDING.value: _jsonb_order(boarding),
            }
        ),
        "state_updated_at": datetime(2020, 3, 1, 15, 0, 1, tzinfo=UTC),
        "worker_updated_at": datetime(2020, 2, 28, tzinfo=UTC),
    }
    alerts = [
        {
            "kind": AlertKind.TRIP_MISMATCH.value,
            "raised_at": datetime(2020, 3, 1, 15, 0, tzinfo=UTC),
            "open": False,
            "closed_at": datetime(2020, 3, 1, 16, 0, tzinfo=UTC),
        },
        {
            "kind": AlertKind.BOARDED_WITHOUT_CLEARANCE.value,
            "raised_at": datetime(2020, 3, 1, 15, 0, tzinfo=UTC),
            "open": True,
            "closed_at": None,
        },
    ]
    return loop_view(worker, alerts)  # type: ignore[arg-type]


def _served(view: dict[str, Any]) -> str:
    return LoopView.model_validate(view).model_dump_json()


def _as_before(view: dict[str, Any]) -> str:
    """The bytes the route answered when it returned the dict itself."""
    return json.dumps(view, separators=(",", ":"), ensure_ascii=False)


def test_the_loop_view_model_answers_the_bytes_the_dict_did() -> None:
    view = _stored_view()
    contract_part = {key: value for key, value in view.items() if key in LOOP_VIEW_FIELDS}

    served = _served(view)

    assert served == _as_before(contract_part)
    assert "temperature_c" not in json.loads(served)["checkpoints"]["boarding"]  # not null


def test_the_loop_view_says_the_contracts_fields_and_a_checkpoint_passes_on_the_rest() -> None:
    view = _stored_view()
    boarding = {**view["checkpoints"]["boarding"], "reviewed_by": None}
    carried = {
        **view,
        "name": "Wang Fang",  # the read model's own business, not the loop view's
        "checkpoints": {**view["checkpoints"], "boarding": boarding},
    }

    served = json.loads(_served(carried))

    assert set(served) == LOOP_VIEW_FIELDS
    # A key no field names comes after the named ones: the same JSON, its place may differ.
    assert served["checkpoints"]["boarding"] == boarding


def test_a_loop_view_outside_the_contract_is_refused() -> None:
    view = _stored_view()

    for field, value in (("stage", "teleported"), ("checkpoints", {"lunch": {}})):
        with pytest.raises(ValueError):
            LoopView.model_validate({**view, field: value})
