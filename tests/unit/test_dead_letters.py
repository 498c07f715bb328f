"""Dead letters at rest: their ids, masked previews and where a replay sends them."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from shared.service_layer.dead_letters import (
    BadDeadLetterId,
    DeadLetterId,
    NotReplayable,
    mask_personal,
    pretty_payload,
    preview,
    replay_topic,
)
from shared.service_layer.messages import DeadLetter

ID_NUMBER = "11010519491231002X"


def letter(value: bytes, source_topic: str) -> DeadLetter:
    return DeadLetter(
        "invalid_field", "", None, value, source_topic, None, None, datetime(2020, 3, 1, tzinfo=UTC)
    )


def test_a_dead_letter_id_is_partition_colon_offset() -> None:
    assert DeadLetterId.parse(" 2:17 ") == DeadLetterId(2, 17)
    assert str(DeadLetterId(2, 17)) == "2:17"


@pytest.mark.parametrize("text", ["", "17", "a:1", "1:", ":1", "1:-2", "1:2:3"])
def test_anything_else_is_not_a_dead_letter_id(text: str) -> None:
    with pytest.raises(BadDeadLetterId):
        DeadLetterId.parse(text)


def test_id_numbers_are_masked_wherever_they_are_even_with_a_bad_check_digit() -> None:
    text = f"id {ID_NUMBER}, typo 110105194912310021, at 2020-03-01T22:00:00+00:00"
    masked = mask_personal(text)
    assert ID_NUMBER not in masked and "110105194912310021" not in masked
    assert "110105********002X" in masked and "2020-03-01T22:00:00+00:00" in masked


def test_the_pretty_payload_masks_id_fields_unless_revealed() -> None:
    raw = orjson.dumps({"id_number": "1101051949", "ssc_card_no": "A12345678", "kind": "boarding"})
    shown = pretty_payload(raw)
    assert "1101051949" not in shown and "A12345678" not in shown and "boarding" in shown
    assert "1101051949" in pretty_payload(raw, reveal=True)


def test_a_preview_is_one_short_masked_line() -> None:
    raw = orjson.dumps({"id_number": ID_NUMBER, "station": "x" * 100}, option=orjson.OPT_INDENT_2)
    line = preview(raw)
    assert "\n" not in line and len(line) <= 48 and ID_NUMBER not in line


def test_a_dead_letter_goes_back_to_its_source_topic() -> None:
    assert replay_topic(letter(b"{}", "scans.boarding")) == "scans.boarding"


def test_an_http_dead_letter_goes_to_the_input_topic_of_its_kind() -> None:
    assert replay_topic(letter(b'{"kind": "checkin"}', "http")) == "scans.checkin"


@pytest.mark.parametrize(
    ("value", "source_topic"),
    [(b"not json", "http"), (b'{"kind": "teleport"}', "http"), (b"[]", "http"), (b"{}", "x")],
)
def test_a_dead_letter_with_nowhere_to_go_is_not_replayable(
    value: bytes, source_topic: str
) -> None:
    with pytest.raises(NotReplayable):
        replay_topic(letter(value, source_topic))
