"""Intake: validate raw input records, pseudonymise, and sort accepted from rejected.

Pure: no I/O. The caller resolves the codes the records name (``codes_named``)
first, publishes the result, and only then commits offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared import topics
from shared.contract import Rejected, decode_json, parse_health_update, parse_scan
from shared.identity import Pseudonymiser
from shared.service_layer.messages import (
    AcceptedHealthUpdate,
    AcceptedScan,
    DeadLetter,
    SourcePosition,
    codes_in,
    identify,
)
from shared.service_layer.ports import InputRecord, WorkerIdentity


@dataclass
class IntakeResult:
    scans: list[AcceptedScan] = field(default_factory=list)
    updates: list[AcceptedHealthUpdate] = field(default_factory=list)
    rejected: list[DeadLetter] = field(default_factory=list)


def dead_letter(record: InputRecord, problem: Rejected, now: datetime) -> DeadLetter:
    return DeadLetter(
        reason=problem.reason,
        message=problem.message,
        original_key=record.key,
        original_value=record.value or b"",
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        rejected_at=now,
    )


# How far a received_at header may lie ahead of this process's clock (clock skew).
_CLOCK_SKEW = timedelta(seconds=5)


def received_at(record: InputRecord, now: datetime) -> datetime:
    """When the scan entered the system: the API's ``received_at`` header if it carries a
    plausible one (so scan-to-state includes the HTTP hop), else ``now``."""
    for name, value in record.headers:
        if name != "received_at":
            continue
        try:
            moment = datetime.fromisoformat(value.decode())
        except (UnicodeDecodeError, ValueError):
            return now
        if moment.tzinfo is None or moment > now + _CLOCK_SKEW:
            return now
        return min(moment, now)
    return now


def codes_named(records: Sequence[InputRecord]) -> set[str]:
    """The codes these records name workers by, to be resolved before ``validate_records``.

    Only records that mention a code are decoded here (most carry an ID number).
    """
    payloads = []
    for record in records:
        if record.value is not None and b'"code"' in record.value:
            try:
                payloads.append(decode_json(record.value))
            except Rejected:
                continue
    return codes_in(payloads)


def validate_records(
    records: Sequence[InputRecord],
    pseudonymiser: Pseudonymiser,
    *,
    now: datetime,
    resolved: Mapping[str, WorkerIdentity] | None = None,
) -> IntakeResult:
    """Each record becomes an accepted scan/update or a dead letter with the reason.

    ``resolved`` maps the codes the records name (``codes_named``) to their workers.
    """
    result = IntakeResult()
    resolved = resolved or {}
    for record in records:
        try:
            if record.value is None:
                raise Rejected("invalid_json", "the message has no value")
            payload = decode_json(record.value)
            if record.topic == topics.HEALTHCODE_UPDATES:
                update = parse_health_update(payload)
                identity = identify(update, pseudonymiser, resolved)
                result.updates.append(
                    AcceptedHealthUpdate.from_input(update, identity, received_at=now)
                )
                continue
            scan = parse_scan(payload, expected_kind=topics.KIND_BY_TOPIC.get(record.topic))
            identity = identify(scan, pseudonymiser, resolved)
        except Rejected as problem:
            result.rejected.append(dead_letter(record, problem, now))
            continue
        source = SourcePosition(record.topic, record.partition, record.offset)
        try:
            accepted = AcceptedScan.from_input(
                scan, identity, received_at=received_at(record, now), source=source
            )
        except (ValueError, OverflowError) as error:  # validation let through what cannot be kept
            result.rejected.append(
                dead_letter(record, Rejected("invalid_field", f"unprocessable: {error}"), now)
            )
            continue
        result.scans.append(accepted)
    return result
