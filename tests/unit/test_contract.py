"""The public scan and health-code update contract: what parses, and the reason for what does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contract import (
    REJECT_REASONS,
    Rejected,
    decode_json,
    parse_health_update,
    parse_scan,
)
from shared.identity import check_digit

FIRST17 = "52050219900307123"  # Guizhou, born 7 March 1990
ID_NUMBER = FIRST17 + check_digit(FIRST17)
ID_NUMBER_ENDING_IN_X = "11010519491231002X"  # GB 11643-1999's own example
ABSENT = object()  # an override that removes the field

VALID_SCANS: dict[str, dict[str, Any]] = {
    "departure_check": {
        "scan_id": "dep-0001",
        "kind": "departure_check",
        "id_number": ID_NUMBER,
        "occurred_at": "2020-03-01T22:00:00+08:00",
        "station": "recruitment-team-guizhou",
        "temperature_c": 36.5,
        "health_code": "green",
    },
    "boarding": {
        "scan_id": "brd-0001",
        "kind": "boarding",
        "id_number": ID_NUMBER,
        "occurred_at": "2020-03-01T23:00:00+08:00",
        "station": "bus-door-3",
        "trip_id": "bus-guiyang-ningbo-0302",
    },
    "arrival_check": {
        "scan_id": "arr-0001",
        "kind": "arrival_check",
        "id_number": ID_NUMBER,
        "occurred_at": "2020-03-02T12:00:00+08:00",
        "station": "ningbo-health-station",
        "temperature_c": 36.6,
        "health_code": "green",
    },
    "checkin": {
        "scan_id": "chk-0001",
        "kind": "checkin",
        "id_number": ID_NUMBER,
        "occurred_at": "2020-03-02T14:00:00+08:00",
        "station": "factory-gate-east",
        "enterprise_id": "yinzhou-textile",
    },
}

VALID_UPDATE = {
    "id_number": ID_NUMBER,
    "health_code": "yellow",
    "as_of": "2020-03-02T09:30:00+08:00",
}


def scan(template: str = "departure_check", /, **overrides: Any) -> dict[str, Any]:
    """A valid scan of the template's kind; an override of ABSENT removes that field."""
    body = {**VALID_SCANS[template], **overrides}
    return {name: value for name, value in body.items() if value is not ABSENT}


def rejection(payload: Any, *, expected_kind: str | None = None) -> Rejected:
    with pytest.raises(Rejected) as caught:
        parse_scan(payload, expected_kind=expected_kind)
    return caught.value


def update_rejection(payload: Any) -> Rejected:
    with pytest.raises(Rejected) as caught:
        parse_health_update(payload)
    return caught.value


def id_with_wrong_check_digit() -> str:
    return FIRST17 + ("0" if ID_NUMBER[-1] != "0" else "1")


# --- valid scans ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(VALID_SCANS))
def test_a_valid_scan_of_each_kind_parses(kind):
    parsed = parse_scan(scan(kind))

    assert parsed.kind == kind
    assert parsed.scan_id == VALID_SCANS[kind]["scan_id"]
    assert parsed.id_number == ID_NUMBER
    assert parsed.station == VALID_SCANS[kind]["station"]


@pytest.mark.parametrize("kind", list(VALID_SCANS))
def test_a_valid_scan_parses_on_the_topic_of_its_own_kind(kind):
    assert parse_scan(scan(kind), expected_kind=kind).kind == kind


def test_a_check_keeps_its_temperature_and_colour():
    parsed = parse_scan(scan("arrival_check", temperature_c=37.8, health_code="red"))

    assert parsed.temperature_c == 37.8
    assert parsed.health_code == "red"


def test_a_boarding_keeps_its_trip_and_a_checkin_its_enterprise():
    assert parse_scan(scan("boarding")).trip_id == "bus-guiyang-ningbo-0302"
    assert parse_scan(scan("checkin")).enterprise_id == "yinzhou-textile"


def test_a_final_lower_case_x_in_the_id_number_is_normalised_to_upper_case():
    parsed = parse_scan(scan(id_number=ID_NUMBER_ENDING_IN_X.lower()))

    assert parsed.id_number == ID_NUMBER_ENDING_IN_X


def test_the_offset_of_occurred_at_is_kept():
    parsed = parse_scan(scan(occurred_at="2020-03-02T08:15:00+08:00"))

    assert parsed.occurred_at.utcoffset() == timedelta(hours=8)
    assert parsed.occurred_at == datetime(2020, 3, 2, 0, 15, tzinfo=UTC)


def test_a_utc_timestamp_written_with_z_is_accepted():
    parsed = parse_scan(scan(occurred_at="2020-03-02T00:15:00Z"))

    assert parsed.occurred_at == datetime(2020, 3, 2, 0, 15, tzinfo=UTC)


def test_fields_the_contract_does_not_name_are_ignored():
    parsed = parse_scan(scan(device_serial="SN-42", battery=0.8))

    assert not hasattr(parsed, "device_serial")
    assert "battery" not in parsed.model_dump()


@pytest.mark.parametrize("temperature_c", [30.0, 45.0])
def test_temperatures_at_the_bounds_of_the_range_are_accepted(temperature_c):
    assert parse_scan(scan(temperature_c=temperature_c)).temperature_c == temperature_c


def test_a_scan_id_of_64_characters_is_accepted():
    assert parse_scan(scan(scan_id="s" * 64)).scan_id == "s" * 64


@pytest.mark.parametrize("occurred_at", ["2000-01-01T00:00:00Z", "2099-12-31T23:59:59Z"])
def test_timestamps_just_inside_2000_to_2100_are_accepted(occurred_at):
    assert parse_scan(scan(occurred_at=occurred_at)).occurred_at.year in (2000, 2099)


# --- required fields -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(VALID_SCANS))
@pytest.mark.parametrize("field", ["scan_id", "kind", "id_number", "occurred_at", "station"])
def test_a_scan_without_a_field_every_kind_needs_is_missing_a_field(kind, field):
    assert rejection(scan(kind, **{field: ABSENT})).reason == "missing_field"


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("departure_check", "temperature_c"),
        ("arrival_check", "temperature_c"),
        ("boarding", "trip_id"),
        ("checkin", "enterprise_id"),
    ],
)
def test_a_scan_without_a_field_its_kind_needs_is_missing_a_field(kind, field):
    problem = rejection(scan(kind, **{field: ABSENT}))

    assert problem.reason == "missing_field"
    assert field in problem.message


@pytest.mark.parametrize(
    ("kind", "field"),
    [("departure_check", "temperature_c"), ("boarding", "trip_id"), ("checkin", "enterprise_id")],
)
def test_a_field_its_kind_needs_given_as_null_is_missing_a_field(kind, field):
    assert rejection(scan(kind, **{field: None})).reason == "missing_field"


# --- one reason code per kind of bad input -------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"scan_id": "a"} trailing'])
def test_bytes_that_are_not_json_are_invalid_json(raw):
    with pytest.raises(Rejected) as caught:
        decode_json(raw)

    assert caught.value.reason == "invalid_json"


def test_json_bytes_decode_to_the_object_they_hold():
    assert decode_json(b'{"scan_id": "a", "temperature_c": 36.5}') == {
        "scan_id": "a",
        "temperature_c": 36.5,
    }


@pytest.mark.parametrize("payload", [[scan()], "a scan", 42, None, True])
def test_a_scan_that_is_not_a_json_object_is_not_an_object(payload):
    assert rejection(payload).reason == "not_an_object"


@pytest.mark.parametrize("kind", ["departure", "Boarding", "", 3, None])
def test_a_kind_outside_the_four_is_an_unknown_kind(kind):
    assert rejection(scan(kind=kind)).reason == "unknown_kind"


def test_a_scan_on_the_topic_of_another_kind_is_a_kind_topic_mismatch():
    problem = rejection(scan("boarding"), expected_kind="checkin")

    assert problem.reason == "kind_topic_mismatch"


@pytest.mark.parametrize(
    ("id_number", "reason"),
    [
        (520502199003071238, "id_number_type"),
        (None, "missing_field"),  # null names nobody, as an absent id_number
        (FIRST17, "id_number_length"),
        (ID_NUMBER + "1", "id_number_length"),
        (FIRST17 + "Y", "id_number_format"),
        ("0" + ID_NUMBER[1:], "id_number_format"),
        (FIRST17[:6] + "19901332" + FIRST17[14:] + "0", "id_number_birth_date"),
        (id_with_wrong_check_digit(), "id_number_checksum"),
    ],
    ids=["number", "null", "17 chars", "19 chars", "letter", "leading zero", "month 13", "check"],
)
def test_a_bad_id_number_is_rejected_with_the_id_number_reason(id_number, reason):
    assert rejection(scan(id_number=id_number)).reason == reason


@pytest.mark.parametrize("temperature_c", [29.9, 45.1])
def test_a_temperature_just_outside_30_to_45_is_out_of_range(temperature_c):
    assert rejection(scan(temperature_c=temperature_c)).reason == "temperature_out_of_range"


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2020-03-02T08:00:00",  # no offset
        "2020-03-02",  # a date, not a date-time
        1583136000,  # not a string
        None,
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
        "2000-01-01T07:59:59+08:00",  # still 1999 in UTC
        "0001-01-01T00:00:00+14:00",  # cannot even be converted to UTC
        "9999-12-31T23:59:59-14:00",
        "2020-02-30T08:00:00+08:00",
        "yesterday",
    ],
)
def test_an_occurred_at_that_is_not_an_rfc3339_time_in_range_is_an_invalid_timestamp(
    occurred_at,
):
    assert rejection(scan(occurred_at=occurred_at)).reason == "invalid_timestamp"


@pytest.mark.parametrize("health_code", ["GREEN", "blue", "", 1])
def test_a_colour_other_than_green_yellow_red_is_an_invalid_health_code(health_code):
    assert rejection(scan(health_code=health_code)).reason == "invalid_health_code"


@pytest.mark.parametrize("scan_id", ["s" * 65, "", "   "], ids=["65 chars", "empty", "blank"])
def test_a_scan_id_outside_1_to_64_characters_is_an_invalid_field(scan_id):
    problem = rejection(scan(scan_id=scan_id))

    assert problem.reason == "invalid_field"
    assert "scan_id" in problem.message


@pytest.mark.parametrize(
    "station",
    ["gate\x00east", "gate\x07east", "gate\x1beast", "gate\x7feast", "gate\x9beast"],
    ids=["NUL", "BEL", "ESC", "DEL", "C1 CSI"],
)
def test_a_station_containing_a_control_character_is_an_invalid_field(station):
    problem = rejection(scan(station=station))

    assert problem.reason == "invalid_field"
    assert "station" in problem.message


def test_a_scan_id_containing_a_nul_is_an_invalid_field():
    assert rejection(scan(scan_id="dep\x000001")).reason == "invalid_field"


# --- health-code updates -------------------------------------------------------------------


def test_a_valid_health_code_update_parses_and_keeps_its_offset():
    parsed = parse_health_update(VALID_UPDATE)

    assert parsed.id_number == ID_NUMBER
    assert parsed.health_code == "yellow"
    assert parsed.as_of.utcoffset() == timedelta(hours=8)
    assert parsed.as_of == datetime(2020, 3, 2, 1, 30, tzinfo=UTC)


def test_a_health_code_update_with_a_lower_case_x_is_normalised():
    parsed = parse_health_update({**VALID_UPDATE, "id_number": ID_NUMBER_ENDING_IN_X.lower()})

    assert parsed.id_number == ID_NUMBER_ENDING_IN_X


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (["not", "an", "object"], "not_an_object"),
        ({"health_code": "red", "as_of": "2020-03-02T09:30:00+08:00"}, "missing_field"),
        ({**VALID_UPDATE, "health_code": "purple"}, "invalid_health_code"),
        ({**VALID_UPDATE, "as_of": "2020-03-02T09:30:00"}, "invalid_timestamp"),
        ({**VALID_UPDATE, "id_number": id_with_wrong_check_digit()}, "id_number_checksum"),
    ],
    ids=["list", "no id", "colour", "no offset", "check digit"],
)
def test_an_invalid_health_code_update_is_rejected_with_its_reason(payload, reason):
    assert update_rejection(payload).reason == reason


# --- the reason codes are a closed set -----------------------------------------------------

BAD_SCANS: list[tuple[Any, str | None]] = [
    ("a string", None),
    (scan(kind="teleport"), None),
    (scan("boarding"), "arrival_check"),
    (scan(station=ABSENT), None),
    (scan("checkin", enterprise_id=ABSENT), None),
    (scan(scan_id="s" * 65), None),
    (scan(station="a\x00b"), None),
    (scan(id_number=42), None),
    (scan(id_number="123"), None),
    (scan(id_number="A" * 18), None),
    (scan(id_number=FIRST17[:6] + "18000101" + FIRST17[14:] + "0"), None),
    (scan(id_number=id_with_wrong_check_digit()), None),
    (scan(temperature_c=12.0), None),
    (scan(temperature_c="warm"), None),
    (scan(occurred_at="0001-01-01T00:00:00+14:00"), None),
    (scan(health_code="orange"), None),
    (scan(trip_id=""), None),
]


def test_every_reason_a_bad_scan_produces_is_a_known_reason_code():
    reasons = {rejection(payload, expected_kind=kind).reason for payload, kind in BAD_SCANS}

    assert reasons <= set(REJECT_REASONS)


def test_every_reason_a_bad_update_or_bad_json_produces_is_a_known_reason_code():
    with pytest.raises(Rejected) as bad_json:
        decode_json(b"[")
    reasons = {bad_json.value.reason} | {
        update_rejection(payload).reason
        for payload in (None, {}, {**VALID_UPDATE, "as_of": 7}, {**VALID_UPDATE, "id_number": 7})
    }

    assert reasons <= set(REJECT_REASONS)


def test_each_rejection_carries_a_message_for_people():
    assert rejection(scan(temperature_c=50.0)).message


@pytest.mark.parametrize("kind", ["departure_check", "arrival_check"])
def test_a_check_without_a_scanned_colour_is_accepted_to_go_by_the_platforms(kind):
    assert parse_scan(scan(kind, health_code=ABSENT)).health_code is None


def test_a_scan_may_name_the_worker_by_the_code_they_show_instead_of_the_id_number():
    parsed = parse_scan(scan("boarding", id_number=ABSENT, code="  https://hc.example/q?id=42 "))

    assert parsed.id_number is None
    assert parsed.code == "https://hc.example/q?id=42"


def test_a_scan_naming_nobody_is_missing_the_id_number_or_code():
    problem = rejection(scan("boarding", id_number=ABSENT))

    assert problem.reason == "missing_field"
    assert "id_number or code" in problem.message


@pytest.mark.parametrize(
    "code",
    ["x" * 513, "abc\x00def", "abc\u0085def", "line\nbreak", ""],
)
def test_a_code_too_long_or_with_control_characters_is_an_invalid_code(code):
    problem = rejection(scan("boarding", id_number=ABSENT, code=code))

    assert problem.reason in ("invalid_code", "missing_field")
    assert problem.reason == "invalid_code" or code == ""


def test_an_override_reason_is_kept_and_bounded():
    assert parse_scan(scan("boarding", override_reason="driver waited")).override_reason
    assert rejection(scan("boarding", override_reason="x" * 501)).reason == "invalid_field"
