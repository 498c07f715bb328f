"""Intake: raw records in, pseudonymised scans and updates or dead letters out, nothing lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from shared import topics
from shared.domain.vocabulary import HealthCode, Kind
from shared.identity import Pseudonymiser, check_digit, mask_id_number
from shared.service_layer.intake import codes_named, validate_records
from shared.service_layer.messages import SourcePosition
from shared.service_layer.ports import InputRecord, WorkerIdentity

NOW = datetime(2020, 3, 2, 6, 0, tzinfo=UTC)
PSEUDONYMISER = Pseudonymiser(b"intake-test-key-0123456789abcdef")

FIRST17 = "52050219900307123"
ID_NUMBER = FIRST17 + check_digit(FIRST17)
ID_NUMBER_ENDING_IN_X = "11010519491231002X"
WRONG_CHECK_DIGIT = FIRST17 + ("0" if ID_NUMBER[-1] != "0" else "1")


def scan_bytes(kind: str, scan_id: str, id_number: str = ID_NUMBER, **fields: Any) -> bytes:
    extra: dict[str, Any] = {
        "departure_check": {"temperature_c": 36.5, "health_code": "green"},
        "boarding": {"trip_id": "bus-guiyang-ningbo-0302"},
        "arrival_check": {"temperature_c": 36.6, "health_code": "green"},
        "checkin": {"enterprise_id": "yinzhou-textile"},
    }[kind]
    body = {
        "scan_id": scan_id,
        "kind": kind,
        "id_number": id_number,
        "occurred_at": "2020-03-01T22:00:00+08:00",
        "station": f"{kind} station",
        **extra,
        **fields,
    }
    return orjson.dumps(body)


def record(topic: str, value: bytes | None, offset: int, *, key: bytes | None = None):
    return InputRecord(topic=topic, partition=offset % 3, offset=offset, key=key, value=value)


DEPARTURE = record(topics.INPUT_TOPICS["departure_check"], scan_bytes("departure_check", "d1"), 10)
BAD_JSON = record(topics.INPUT_TOPICS["boarding"], b'{"scan_id": "b0", "kind": ', 11, key=b"k1")
NO_VALUE = record(topics.INPUT_TOPICS["arrival_check"], None, 12, key=b"tombstone")
MISMATCH = record(topics.INPUT_TOPICS["checkin"], scan_bytes("boarding", "b-wrong-topic"), 13)
BOARDING = record(
    topics.INPUT_TOPICS["boarding"],
    scan_bytes("boarding", "b1", id_number=ID_NUMBER_ENDING_IN_X.lower()),
    14,
    key=b"any key the producer likes",
)
BAD_ID = record(
    topics.INPUT_TOPICS["arrival_check"],
    scan_bytes("arrival_check", "a-bad-id", id_number=WRONG_CHECK_DIGIT),
    15,
)
UPDATE = record(
    topics.HEALTHCODE_UPDATES,
    orjson.dumps(
        {"id_number": ID_NUMBER, "health_code": "yellow", "as_of": "2020-03-02T09:30:00+08:00"}
    ),
    16,
)
CHECKIN = record(topics.INPUT_TOPICS["checkin"], scan_bytes("checkin", "c1"), 17)
UNCONVERTIBLE_TIME = record(
    topics.INPUT_TOPICS["departure_check"],
    scan_bytes("departure_check", "d-year-1", occurred_at="0001-01-01T00:00:00+14:00"),
    18,
)

BATCH = [DEPARTURE, BAD_JSON, NO_VALUE, MISMATCH, BOARDING, BAD_ID, UPDATE, CHECKIN]
REJECTED_IN_BATCH = [BAD_JSON, NO_VALUE, MISMATCH, BAD_ID]


def test_accepted_scans_keep_the_order_they_came_in():
    result = validate_records(BATCH, PSEUDONYMISER, now=NOW)

    assert [accepted.scan.scan_id for accepted in result.scans] == ["d1", "b1", "c1"]
    assert [accepted.scan.kind for accepted in result.scans] == [
        Kind.DEPARTURE_CHECK,
        Kind.BOARDING,
        Kind.CHECKIN,
    ]


def test_accepted_scans_carry_the_worker_ref_and_masked_id_of_the_normalised_id_number():
    result = validate_records(BATCH, PSEUDONYMISER, now=NOW)
    departure, boarding, _ = result.scans

    assert departure.worker_ref == PSEUDONYMISER.worker_ref(ID_NUMBER)
    assert departure.id_masked == mask_id_number(ID_NUMBER) == "520502********1238"
    assert boarding.worker_ref == PSEUDONYMISER.worker_ref(ID_NUMBER_ENDING_IN_X)
    assert boarding.id_masked == "110105********002X"


def test_accepted_scans_are_keyed_by_worker_ref_and_never_carry_the_plain_id_number():
    result = validate_records(BATCH, PSEUDONYMISER, now=NOW)

    for accepted in result.scans:
        assert accepted.key() == accepted.worker_ref.encode()
        body = accepted.to_bytes()
        assert ID_NUMBER.encode() not in body
        assert ID_NUMBER_ENDING_IN_X.encode() not in body
        assert ID_NUMBER_ENDING_IN_X.lower().encode() not in body


def test_accepted_scans_remember_where_they_were_read_and_when():
    result = validate_records(BATCH, PSEUDONYMISER, now=NOW)
    departure = result.scans[0]

    assert departure.source == SourcePosition(DEPARTURE.topic, DEPARTURE.partition, 10)
    assert departure.received_at == NOW
    assert departure.scan.occurred_at == datetime(2020, 3, 1, 14, 0, tzinfo=UTC)


def test_a_health_code_update_is_accepted_pseudonymised():
    result = validate_records(BATCH, PSEUDONYMISER, now=NOW)

    [update] = result.updates
    assert update.worker_ref == PSEUDONYMISER.worker_ref(ID_NUMBER)
    assert update.id_masked == mask_id_number(ID_NUMBER)
    assert update.update.health_code is HealthCode.YELLOW
    assert update.update.as_of == datetime(2020, 3, 2, 1, 30, tzinfo=UTC)
    assert ID_NUMBER.encode() not in update.to_bytes()


def test_each_rejected_record_becomes_a_dead_letter_with_its_reason_in_order():
    result = validate_records(BATCH, PSEUDONYMISER, now=NOW)

    assert [letter.reason for letter in result.rejected] == [
        "invalid_json",
        "invalid_json",
        "kind_topic_mismatch",
        "id_number_checksum",
    ]
    assert all(letter.message for letter in result.rejected)


def test_a_dead_letter_keeps_the_original_bytes_unchanged_and_where_they_came_from():
    result = validate_records(BATCH, PSEUDONYMISER, now=NOW)

    for letter, original in zip(result.rejected, REJECTED_IN_BATCH, strict=True):
        assert letter.original_value == (original.value or b"")
        assert letter.original_key == original.key
        assert letter.source_topic == original.topic
        assert letter.source_partition == original.partition
        assert letter.source_offset == original.offset
        assert letter.rejected_at == NOW


def test_the_dead_letter_of_a_bad_id_number_holds_the_original_id_as_sent():
    result = validate_records([BAD_ID], PSEUDONYMISER, now=NOW)

    [letter] = result.rejected
    assert letter.original_value == BAD_ID.value
    assert WRONG_CHECK_DIGIT.encode() in letter.original_value


def test_every_record_is_either_accepted_or_rejected():
    result = validate_records(BATCH, PSEUDONYMISER, now=NOW)

    assert len(result.scans) + len(result.updates) + len(result.rejected) == len(BATCH)


def test_a_scan_whose_timestamp_cannot_be_converted_is_dead_lettered_not_raised():
    result = validate_records([UNCONVERTIBLE_TIME, DEPARTURE], PSEUDONYMISER, now=NOW)

    [letter] = result.rejected
    assert letter.reason == "invalid_timestamp"
    assert letter.original_value == UNCONVERTIBLE_TIME.value
    assert letter.source_offset == UNCONVERTIBLE_TIME.offset
    assert [accepted.scan.scan_id for accepted in result.scans] == ["d1"]


def test_a_scan_on_the_health_code_topic_is_rejected_not_taken_for_an_update():
    stray = record(topics.HEALTHCODE_UPDATES, scan_bytes("checkin", "c-stray"), 19)

    result = validate_records([stray], PSEUDONYMISER, now=NOW)

    assert result.scans == [] and result.updates == []
    assert [letter.reason for letter in result.rejected] == ["missing_field"]


def test_json_that_is_not_an_object_is_dead_lettered_as_not_an_object():
    listed = record(topics.INPUT_TOPICS["boarding"], b'[{"scan_id": "b1"}]', 20)

    result = validate_records([listed], PSEUDONYMISER, now=NOW)

    assert [letter.reason for letter in result.rejected] == ["not_an_object"]


def test_an_empty_batch_gives_an_empty_result():
    result = validate_records([], PSEUDONYMISER, now=NOW)

    assert (result.scans, result.updates, result.rejected) == ([], [], [])


def with_headers(base: InputRecord, *headers: tuple[str, bytes]) -> InputRecord:
    return InputRecord(
        topic=base.topic,
        partition=base.partition,
        offset=base.offset,
        key=base.key,
        value=base.value,
        headers=headers,
    )


def test_a_scan_that_came_over_http_is_timed_from_the_apis_receipt():
    earlier = NOW - timedelta(milliseconds=850)
    received = with_headers(DEPARTURE, ("received_at", earlier.isoformat().encode()))

    [accepted] = validate_records([received], PSEUDONYMISER, now=NOW).scans

    assert accepted.received_at == earlier


@pytest.mark.parametrize(
    "header",
    [
        b"not a time",
        b"\xff\xfe",
        b"2020-03-02T05:59:59",  # no offset
        (NOW + timedelta(minutes=5)).isoformat().encode(),  # ahead of the clock
    ],
)
def test_a_received_at_header_that_is_not_a_plausible_past_moment_is_ignored(header: bytes):
    [accepted] = validate_records(
        [with_headers(DEPARTURE, ("received_at", header))], PSEUDONYMISER, now=NOW
    ).scans

    assert accepted.received_at == NOW


LINKED = WorkerIdentity("w_" + "a" * 24, "520502********1238")


def code_record(kind: str, scan_id: str, code: str, offset: int, **fields: Any) -> InputRecord:
    body = orjson.loads(scan_bytes(kind, scan_id, **fields))
    del body["id_number"]
    body["code"] = code
    return record(topics.INPUT_TOPICS[kind], orjson.dumps(body), offset)


def test_the_codes_a_batch_names_are_found_without_decoding_the_others():
    batch = [DEPARTURE, code_record("boarding", "b-code", " HC-0001 ", 30), BAD_JSON]

    assert codes_named(batch) == {"HC-0001"}


def test_a_scan_by_a_linked_code_is_accepted_for_the_linked_worker():
    scan = code_record("boarding", "b-code", "HC-0001", 31)

    [accepted] = validate_records(
        [scan], PSEUDONYMISER, now=NOW, resolved={"HC-0001": LINKED}
    ).scans

    assert (accepted.worker_ref, accepted.id_masked) == (LINKED.worker_ref, LINKED.id_masked)
    assert b"HC-0001" not in accepted.to_bytes()


def test_a_scan_by_a_code_no_link_resolves_is_dead_lettered_as_unknown_code():
    scan = code_record("boarding", "b-unknown", "HC-9999", 32)

    result = validate_records([scan], PSEUDONYMISER, now=NOW, resolved={"HC-0001": LINKED})

    assert [letter.reason for letter in result.rejected] == ["unknown_code"]
    assert result.rejected[0].original_value == scan.value


def test_an_id_number_and_a_code_naming_different_workers_are_a_code_mismatch():
    scan = code_record("boarding", "b-both", "HC-0001", 33, id_number=ID_NUMBER)
    body = orjson.loads(scan.value or b"")
    body["id_number"] = ID_NUMBER
    scan = record(scan.topic, orjson.dumps(body), 33)

    result = validate_records([scan], PSEUDONYMISER, now=NOW, resolved={"HC-0001": LINKED})

    assert [letter.reason for letter in result.rejected] == ["code_mismatch"]


def test_an_id_number_and_a_code_naming_the_same_worker_are_accepted():
    same = WorkerIdentity(PSEUDONYMISER.worker_ref(ID_NUMBER), mask_id_number(ID_NUMBER))
    body = orjson.loads(scan_bytes("boarding", "b-agree"))
    body["code"] = "HC-0002"
    scan = record(topics.INPUT_TOPICS["boarding"], orjson.dumps(body), 34)

    result = validate_records([scan], PSEUDONYMISER, now=NOW, resolved={"HC-0002": same})

    assert [item.worker_ref for item in result.scans] == [same.worker_ref]


def test_a_colour_update_by_a_linked_code_is_accepted_for_the_linked_worker():
    update = record(
        topics.HEALTHCODE_UPDATES,
        orjson.dumps(
            {"code": "HC-0001", "health_code": "red", "as_of": "2020-03-02T09:30:00+08:00"}
        ),
        35,
    )

    [accepted] = validate_records(
        [update], PSEUDONYMISER, now=NOW, resolved={"HC-0001": LINKED}
    ).updates

    assert accepted.worker_ref == LINKED.worker_ref
