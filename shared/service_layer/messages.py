"""Every topic's messages past validation and their codecs: accepted scans and colour
updates, loop transitions and alerts, and the dead-letter envelope.

Past validation no message carries a plain ID number: ``worker_ref`` keys the
message (so one partition, one writer per worker) and ``id_masked`` is shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from shared import topics
from shared.contract import HealthCodeUpdateIn, Rejected, ScanIn
from shared.domain.model import Alert, Disposition, HealthCodeUpdate, Scan, Transition
from shared.domain.vocabulary import DispositionKind, HealthCode, Kind
from shared.identity import Pseudonymiser, mask_id_number
from shared.service_layer.ports import Message, WorkerIdentity


@dataclass(frozen=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class AcceptedScan:
    """A validated, pseudonymised scan on ``scans.accepted``."""

    worker_ref: str
    id_masked: str
    scan: Scan
    received_at: datetime
    source: SourcePosition | None = None

    @classmethod
    def from_input(
        cls,
        scan_in: ScanIn,
        identity: WorkerIdentity,
        *,
        received_at: datetime,
        source: SourcePosition | None = None,
    ) -> AcceptedScan:
        scan = Scan(
            scan_id=scan_in.scan_id,
            kind=Kind(scan_in.kind),
            occurred_at=scan_in.occurred_at.astimezone(UTC),
            station=scan_in.station,
            temperature_c=scan_in.temperature_c,
            health_code=HealthCode(scan_in.health_code) if scan_in.health_code else None,
            trip_id=scan_in.trip_id,
            enterprise_id=scan_in.enterprise_id,
            override_reason=scan_in.override_reason,
        )
        return cls(
            worker_ref=identity.worker_ref,
            id_masked=identity.id_masked,
            scan=scan,
            received_at=received_at,
            source=source,
        )

    def key(self) -> bytes:
        return self.worker_ref.encode()

    def to_bytes(self) -> bytes:
        scan = self.scan
        body: dict[str, Any] = {
            "worker_ref": self.worker_ref,
            "id_masked": self.id_masked,
            "scan_id": scan.scan_id,
            "kind": scan.kind.value,
            "occurred_at": scan.occurred_at.isoformat(),
            "station": scan.station,
            "temperature_c": scan.temperature_c,
            "health_code": scan.health_code.value if scan.health_code else None,
            "trip_id": scan.trip_id,
            "enterprise_id": scan.enterprise_id,
            "received_at": self.received_at.isoformat(),
        }
        if scan.override_reason is not None:
            body["override_reason"] = scan.override_reason
        if self.source is not None:
            body["source"] = {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
            }
        return orjson.dumps(body)

    @classmethod
    def from_bytes(cls, raw: bytes) -> AcceptedScan:
        body = orjson.loads(raw)
        source = body.get("source")
        return cls(
            worker_ref=body["worker_ref"],
            id_masked=body["id_masked"],
            scan=Scan(
                scan_id=body["scan_id"],
                kind=Kind(body["kind"]),
                occurred_at=datetime.fromisoformat(body["occurred_at"]),
                station=body["station"],
                temperature_c=body["temperature_c"],
                health_code=HealthCode(body["health_code"]) if body["health_code"] else None,
                trip_id=body["trip_id"],
                enterprise_id=body["enterprise_id"],
                override_reason=body.get("override_reason"),
            ),
            received_at=datetime.fromisoformat(body["received_at"]),
            source=SourcePosition(**source) if source else None,
        )


@dataclass(frozen=True)
class AcceptedHealthUpdate:
    """A validated colour update on ``healthcode.accepted``."""

    worker_ref: str
    id_masked: str
    update: HealthCodeUpdate
    received_at: datetime

    @classmethod
    def from_input(
        cls, update_in: HealthCodeUpdateIn, identity: WorkerIdentity, *, received_at: datetime
    ) -> AcceptedHealthUpdate:
        return cls(
            worker_ref=identity.worker_ref,
            id_masked=identity.id_masked,
            update=HealthCodeUpdate(
                HealthCode(update_in.health_code), update_in.as_of.astimezone(UTC)
            ),
            received_at=received_at,
        )

    def key(self) -> bytes:
        return self.worker_ref.encode()

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "worker_ref": self.worker_ref,
                "id_masked": self.id_masked,
                "health_code": self.update.health_code.value,
                "as_of": self.update.as_of.isoformat(),
                "received_at": self.received_at.isoformat(),
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> AcceptedHealthUpdate:
        body = orjson.loads(raw)
        return cls(
            worker_ref=body["worker_ref"],
            id_masked=body["id_masked"],
            update=HealthCodeUpdate(
                HealthCode(body["health_code"]), datetime.fromisoformat(body["as_of"])
            ),
            received_at=datetime.fromisoformat(body["received_at"]),
        )


@dataclass(frozen=True)
class AcceptedDisposition:
    """A recorded disposition on ``dispositions.accepted`` (keyed by worker_ref)."""

    worker_ref: str
    id_masked: str
    disposition: Disposition
    received_at: datetime

    def key(self) -> bytes:
        return self.worker_ref.encode()

    def to_bytes(self) -> bytes:
        item = self.disposition
        return orjson.dumps(
            {
                "worker_ref": self.worker_ref,
                "id_masked": self.id_masked,
                "disposition_id": item.disposition_id,
                "kind": item.kind.value,
                "at": item.at.isoformat(),
                "by": item.by,
                "note": item.note,
                "received_at": self.received_at.isoformat(),
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> AcceptedDisposition:
        body = orjson.loads(raw)
        return cls(
            worker_ref=body["worker_ref"],
            id_masked=body["id_masked"],
            disposition=Disposition(
                body["disposition_id"],
                DispositionKind(body["kind"]),
                datetime.fromisoformat(body["at"]),
                body["by"],
                body["note"],
            ),
            received_at=datetime.fromisoformat(body["received_at"]),
        )


@dataclass(frozen=True)
class DeadLetter:
    """A rejected input: the original bytes as the value, the why in headers."""

    reason: str
    message: str
    original_key: bytes | None
    original_value: bytes
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    rejected_at: datetime

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("reason", self.reason.encode()),
            ("message", self.message.encode()),
            ("source_topic", self.source_topic.encode()),
            ("source_partition", str(self.source_partition).encode()),
            ("source_offset", str(self.source_offset).encode()),
            ("rejected_at", self.rejected_at.isoformat().encode()),
        ]

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> DeadLetter:
        fields = {name: raw.decode() for name, raw in headers}

        def as_int(text: str | None) -> int | None:
            return int(text) if text not in (None, "None") else None

        return cls(
            reason=fields.get("reason", "unknown"),
            message=fields.get("message", ""),
            original_key=key,
            original_value=value,
            source_topic=fields.get("source_topic", ""),
            source_partition=as_int(fields.get("source_partition")),
            source_offset=as_int(fields.get("source_offset")),
            rejected_at=datetime.fromisoformat(fields["rejected_at"])
            if "rejected_at" in fields
            else datetime.now(UTC),
        )


@dataclass(frozen=True)
class OutboxMessage:
    """A message written in the transaction that decided it, published later by a relay.

    ``message_id`` is in its body and in a header: a relay that dies between the
    broker's acknowledgement and the row's deletion publishes it again, and
    consumers drop the second copy by this id.
    """

    message_id: str
    topic: str
    key: bytes | None
    value: bytes

    def to_message(self) -> Message:
        return (self.key, self.value, [("message_id", self.message_id.encode())])


def _outgoing(topic: str, worker_ref: str, body: dict[str, Any]) -> OutboxMessage:
    message_id = str(uuid.uuid4())
    return OutboxMessage(
        message_id, topic, worker_ref.encode(), orjson.dumps({"message_id": message_id, **body})
    )


def transition_message(
    worker_ref: str, enterprise_id: str | None, transition: Transition, at: datetime
) -> OutboxMessage:
    """A ``loop.transitions`` message: the stage and status before and after."""
    return _outgoing(
        topics.TRANSITIONS,
        worker_ref,
        {
            "worker_ref": worker_ref,
            "enterprise_id": enterprise_id,
            "previous_stage": transition.previous.stage.value,
            "previous_status": transition.previous.status.value,
            "stage": transition.state.stage.value,
            "status": transition.state.status.value,
            "at": at.isoformat(),
        },
    )


def alert_message(worker_ref: str, enterprise_id: str | None, alert: Alert) -> OutboxMessage:
    """A ``loop.alerts`` message: an alert raised or closed."""
    return _outgoing(
        topics.ALERTS,
        worker_ref,
        {
            "worker_ref": worker_ref,
            "enterprise_id": enterprise_id,
            "kind": alert.kind.value,
            "raised_at": alert.raised_at.isoformat(),
            "open": alert.open,
            "closed_at": alert.closed_at.isoformat() if alert.closed_at else None,
        },
    )


def outbox_messages(
    worker_ref: str, enterprise_id: str | None, transition: Transition, at: datetime
) -> list[OutboxMessage]:
    """What one worker's transition announces: the change (if any), then each alert
    raised or closed."""
    messages = []
    if transition.changed:
        messages.append(transition_message(worker_ref, enterprise_id, transition, at))
    for alert in (
        *transition.raised,
        *(a for a in transition.closed if a not in transition.raised),
    ):
        messages.append(alert_message(worker_ref, enterprise_id, alert))
    return messages


def codes_in(payloads: Iterable[Any]) -> set[str]:
    """The codes (health-code ids, card numbers) that decoded inputs name workers by."""
    return {
        code.strip()
        for payload in payloads
        if isinstance(payload, dict) and isinstance(code := payload.get("code"), str)
    }


def identify(
    given: ScanIn | HealthCodeUpdateIn,
    pseudonymiser: Pseudonymiser,
    resolved: Mapping[str, WorkerIdentity],
) -> WorkerIdentity:
    """The worker an input names, by ID number or by a linked code.

    Raises ``Rejected``: ``unknown_code`` when no link resolves the code (the
    input can be replayed once the link exists), ``code_mismatch`` when the
    ID number and the code name different workers.
    """
    by_id = (
        WorkerIdentity(pseudonymiser.worker_ref(given.id_number), mask_id_number(given.id_number))
        if given.id_number is not None
        else None
    )
    if given.code is None:
        assert by_id is not None  # the contract needs one of the two
        return by_id
    by_code = resolved.get(given.code)
    if by_code is None:
        raise Rejected("unknown_code", "no link resolves this code: link it, then replay")
    if by_id is not None and by_id.worker_ref != by_code.worker_ref:
        raise Rejected("code_mismatch", "the ID number and the code name different workers")
    return by_code
