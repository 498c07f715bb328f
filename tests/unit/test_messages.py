"""Messages past validation and dead letters survive the trip through Kafka bytes and headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson

from shared.contract import parse_health_update, parse_scan
from shared.domain.model import HealthCodeUpdate, Scan
from shared.domain.vocabulary import HealthCode, Kind
from shared.identity import Pseudonymiser, check_digit
from shared.service_layer.messages import (
    AcceptedHealthUpdate,
    AcceptedScan,
    DeadLetter,
    SourcePosition,
    identify,
)

PSEUDONYMISER = Pseudonymiser(b"messages-test-key-0123456789abcd")
FIRST17 = "33030219900302123"
ID_NUMBER = FIRST17 + check_digit(FIRST17)
WORKER_REF = PSEUDONYMISER.worker_ref(ID_NUMBER)
RECEIVED_AT = datetime(2020, 3, 2, 6, 0, 0, 250000, tzinfo=UTC)


def accepted_scan(scan: Scan, source: SourcePosition | None = None) -> AcceptedScan:
    return AcceptedScan(
        worker_ref=WORKER_REF,
        id_masked="330302********" + ID_NUMBER[-4:],
        scan=scan,
        received_at=RECEIVED_AT,
        source=source,
    )


def test_an_accepted_check_round_trips_through_bytes():
    original = accepted_scan(
        Scan(
            scan_id="dep-0001",
            kind=Kind.DEPARTURE_CHECK,
            occurred_at=datetime(2020, 3, 1, 14, 0, tzinfo=UTC),
            station="recruitment-team-guizhou",
            temperature_c=37.4,
            health_code=HealthCode.YELLOW,
        ),
        source=SourcePosition("scans.departure_check", 2, 41),
    )

    assert AcceptedScan.from_bytes(original.to_bytes()) == original


def test_an_accepted_boarding_and_checkin_round_trip_through_bytes():
    boarding = accepted_scan(
        Scan(
            scan_id="brd-0001",
            kind=Kind.BOARDING,
            occurred_at=datetime(2020, 3, 1, 15, 0, tzinfo=UTC),
            station="bus-door-3",
            trip_id="bus-guiyang-ningbo-0302",
        )
    )
    checkin = accepted_scan(
        Scan(
            scan_id="chk-0001",
            kind=Kind.CHECKIN,
            occurred_at=datetime(2020, 3, 2, 6, 0, tzinfo=UTC),
            station="factory-gate-east",
            enterprise_id="yinzhou-textile",
        ),
        source=SourcePosition("scans.checkin", 0, 0),
    )

    assert AcceptedScan.from_bytes(boarding.to_bytes()) == boarding
    assert AcceptedScan.from_bytes(checkin.to_bytes()) == checkin


def test_an_accepted_scan_built_from_input_round_trips_and_keeps_the_instant():
    scan_in = parse_scan(
        {
            "scan_id": "arr-0001",
            "kind": "arrival_check",
            "id_number": ID_NUMBER,
            "occurred_at": "2020-03-02T12:00:00.125+08:00",
            "station": "ningbo-health-station",
            "temperature_c": 36.6,
            "health_code": "green",
        }
    )
    original = AcceptedScan.from_input(
        scan_in, identify(scan_in, PSEUDONYMISER, {}), received_at=RECEIVED_AT
    )

    restored = AcceptedScan.from_bytes(original.to_bytes())

    assert restored == original
    assert restored.scan.occurred_at == datetime(2020, 3, 2, 4, 0, 0, 125000, tzinfo=UTC)


def test_an_accepted_scan_is_keyed_by_its_worker_ref():
    original = accepted_scan(
        Scan(
            scan_id="brd-0002",
            kind=Kind.BOARDING,
            occurred_at=RECEIVED_AT,
            station="bus-door-1",
            trip_id="train-z1234",
        )
    )

    assert original.key() == WORKER_REF.encode()
    assert ID_NUMBER.encode() not in original.to_bytes()


def test_an_accepted_health_update_round_trips_through_bytes():
    original = AcceptedHealthUpdate(
        worker_ref=WORKER_REF,
        id_masked="330302********" + ID_NUMBER[-4:],
        update=HealthCodeUpdate(HealthCode.RED, datetime(2020, 3, 2, 1, 30, tzinfo=UTC)),
        received_at=RECEIVED_AT,
    )

    assert AcceptedHealthUpdate.from_bytes(original.to_bytes()) == original


def test_an_accepted_health_update_from_input_is_keyed_by_worker_ref_without_the_id():
    update_in = parse_health_update(
        {"id_number": ID_NUMBER, "health_code": "yellow", "as_of": "2020-03-02T09:30:00+08:00"}
    )
    original = AcceptedHealthUpdate.from_input(
        update_in, identify(update_in, PSEUDONYMISER, {}), received_at=RECEIVED_AT
    )

    assert original.key() == WORKER_REF.encode()
    assert AcceptedHealthUpdate.from_bytes(original.to_bytes()) == original
    assert ID_NUMBER.encode() not in original.to_bytes()
    assert orjson.loads(original.to_bytes())["worker_ref"] == WORKER_REF


def dead_letter(**overrides) -> DeadLetter:
    fields = {
        "reason": "temperature_out_of_range",
        "message": "temperature_c must be within 30.0–45.0",
        "original_key": b"producer-key",
        "original_value": b'{"scan_id": "d1", "temperature_c": 12.0}',
        "source_topic": "scans.departure_check",
        "source_partition": 3,
        "source_offset": 1234,
        "rejected_at": datetime(2020, 3, 2, 6, 0, tzinfo=timezone(timedelta(hours=8))),
    }
    return DeadLetter(**{**fields, **overrides})


def test_a_dead_letter_round_trips_through_its_headers():
    original = dead_letter()

    restored = DeadLetter.from_record(
        original.original_key, original.original_value, original.headers()
    )

    assert restored == original


def test_a_dead_letter_without_key_or_position_round_trips_through_its_headers():
    original = dead_letter(
        reason="invalid_json",
        message="the message has no value",
        original_key=None,
        original_value=b"",
        source_partition=None,
        source_offset=None,
    )

    restored = DeadLetter.from_record(None, b"", original.headers())

    assert restored == original


def test_a_dead_letter_carries_the_original_bytes_as_they_were():
    not_utf8 = b"\xff\xfe{garbage"
    original = dead_letter(reason="invalid_json", original_value=not_utf8)

    restored = DeadLetter.from_record(original.original_key, not_utf8, original.headers())

    assert restored.original_value == not_utf8


def test_dead_letter_headers_name_the_reason_and_the_source():
    headers = dict(dead_letter().headers())

    assert headers["reason"] == b"temperature_out_of_range"
    assert headers["source_topic"] == b"scans.departure_check"
    assert headers["source_partition"] == b"3"
    assert headers["source_offset"] == b"1234"
