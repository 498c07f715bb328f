"""Dead letters at rest on ``scans.rejected``: how they are named, shown and replayed.

Pure: no Kafka or database. A dead letter's value is the original input, which
may hold plain ID numbers, so everything shown to an operator goes through
``mask_personal`` unless they ask to see it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from shared import topics
from shared.identity import mask_card_number, mask_id_number
from shared.service_layer.messages import DeadLetter

# Topics a dead letter may be replayed to: the input topics and the ones an
# apply-stage dead letter (``unprocessable``) came from.
REPLAYABLE_TOPICS = frozenset(
    {
        *topics.INPUT_TOPICS.values(),
        topics.HEALTHCODE_UPDATES,
        topics.ACCEPTED,
        topics.HEALTHCODE_ACCEPTED,
    }
)
HTTP_SOURCE = "http"

# 15 to 18 characters of digits (the last may be X): resident ID numbers of both
# generations, with a wrong length or check digit too. Timestamps have separators.
_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])[0-9]{14,17}[0-9Xx](?![0-9A-Za-z])")


def _mask_id_field(text: str) -> str:
    # Too short for first-6-last-4 to hide anything: hide it all.
    return mask_id_number(text) if len(text) >= 14 else "*" * len(text)


_PERSONAL_FIELDS = {"id_number": _mask_id_field, "ssc_card_no": mask_card_number}


class BadDeadLetterId(ValueError):
    """The text does not name a dead letter (``PARTITION:OFFSET``)."""


class NotReplayable(ValueError):
    """The dead letter has nowhere to go back to; the message says why."""


@dataclass(frozen=True, order=True)
class DeadLetterId:
    """A dead letter's place on ``scans.rejected``, written ``PARTITION:OFFSET``."""

    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> DeadLetterId:
        partition, colon, offset = text.strip().partition(":")
        if not colon or not partition.isdigit() or not offset.isdigit():
            raise BadDeadLetterId(
                f"{text!r} is not a dead-letter id: write PARTITION:OFFSET, e.g. 0:17"
            )
        return cls(int(partition), int(offset))

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


def mask_personal(text: str) -> str:
    """``text`` with every ID-number-like run of digits masked like ``id_masked``."""
    return _ID_LIKE.sub(lambda match: mask_id_number(match.group(0)), text)


def _mask_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            name: _PERSONAL_FIELDS[name](item)
            if name in _PERSONAL_FIELDS and isinstance(item, str)
            else _mask_fields(item)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_mask_fields(item) for item in value]
    return value


def as_text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", errors="backslashreplace")


def pretty_payload(raw: bytes, *, reveal: bool = False) -> str:
    """The original bytes for reading: indented JSON if it parses, else the text."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = as_text(raw)
        return text if reveal else mask_personal(text)
    if not reveal:
        body = _mask_fields(body)
    text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    return text if reveal else mask_personal(text)


def preview(raw: bytes, width: int = 48) -> str:
    """One masked line of the original bytes, at most ``width`` characters."""
    text = " ".join(mask_personal(as_text(raw)).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def replay_topic(letter: DeadLetter) -> str:
    """Where replaying ``letter`` sends its original bytes, or raise NotReplayable.

    Input that came over HTTP goes to the input topic of its ``kind`` (colour
    updates to ``healthcode.updates``).
    """
    if letter.source_topic in REPLAYABLE_TOPICS:
        return letter.source_topic
    if letter.source_topic != HTTP_SOURCE:
        raise NotReplayable(f"source topic {letter.source_topic!r} takes no replays")
    try:
        body = orjson.loads(letter.original_value)
    except orjson.JSONDecodeError:
        raise NotReplayable("came over HTTP and is not JSON") from None
    kind = body.get("kind") if isinstance(body, dict) else None
    if kind is None and isinstance(body, dict) and "as_of" in body:
        return topics.HEALTHCODE_UPDATES  # a colour update posted over HTTP
    if not isinstance(kind, str) or kind not in topics.INPUT_TOPICS:
        raise NotReplayable("came over HTTP with no valid kind")
    return topics.INPUT_TOPICS[kind]
