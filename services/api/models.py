"""Output models at the API's edge that more than one route module answers with.

The adapters still hand the routes plain dicts; FastAPI validates them through
these models (``response_model``), so the served OpenAPI says exactly what comes
back and an answer that drifts from it fails loudly instead of reaching a client.
The JSON is what the dicts were: the same keys, values and key order; a loop view
says no more than the contract's fields, a checkpoint passes on keys it does not name.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from shared.domain.vocabulary import (
    AlertKind,
    DispositionKind,
    HealthCode,
    HealthCodeSource,
    Kind,
    Stage,
    Status,
    Travel,
)

# Timestamps stay the ISO 8601 strings the adapters write (``datetime.isoformat()``,
# always with an offset); the schema says they are date-times.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class CheckpointView(BaseModel):
    """The latest scan at one checkpoint and whether it passed.

    An optional field is present only when the scan had it; further keys the
    tracker may record come as they are.
    """

    model_config = ConfigDict(extra="allow")

    # Declared in the order PostgreSQL's jsonb hands the keys back (shorter first, then
    # bytewise), so the answer keeps the bytes it had when it was the stored dict.
    at: Timestamp
    passed: bool
    scan_id: str | None = None
    station: str
    trip_id: str | None = None
    health_code: HealthCode | None = None
    enterprise_id: str | None = None
    temperature_c: float | None = None
    override_reason: str | None = None
    health_code_source: HealthCodeSource | None = None

    # No return annotation: pydantic would take it as the model's serialized schema.
    @model_serializer(mode="wrap")
    def _as_recorded(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        """An optional field the checkpoint did not have stays out (rather than null)."""
        data = handler(self)
        return {key: value for key, value in data.items() if key in self.model_fields_set}


class AlertView(BaseModel):
    kind: AlertKind
    raised_at: Timestamp
    open: bool
    closed_at: Timestamp | None


class DispositionView(BaseModel):
    """What was recorded about the worker after a failed check, by whom and when."""

    disposition_id: str
    kind: DispositionKind
    at: Timestamp
    by: str
    note: str


class LoopView(BaseModel):
    """One worker's closed loop: where they are, each checkpoint, every alert."""

    # Exactly the contract's fields: a key the read model carries for its own use is
    # left out of the answer. A field the contract adds must be declared here to be served.
    worker_ref: str
    id_masked: str
    name: Annotated[str | None, Field(description="the manifest's name")]
    enterprise_id: str | None
    trip_id: str | None
    travel: Annotated[Travel, Field(description="organised trip, or on their own")]
    stage: Stage
    status: Status
    health_code: HealthCode | None
    checkpoints: dict[Kind, CheckpointView]
    alerts: list[AlertView]
    dispositions: list[DispositionView]
    updated_at: Timestamp
