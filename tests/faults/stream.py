"""The fault suite's generator: journeys for many workers, delivered imperfectly.

Each worker makes one journey (most close, some stop early, some run a fever or
show a red code). The journeys are put in event-time order across workers, then
delivered as real devices and integrations would: about 10 % of the messages
twice, about 5 % after a later event of the same worker, and about 1 % broken
(bad JSON, bad ID checksum). Every scan_id, trip and enterprise carries the
run's tag, so a run can be told apart in a shared database and on shared topics.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from shared import topics
from tests.support.scans import four_scans
from tests.support.servers import random_id_number

KINDS = ("departure_check", "boarding", "arrival_check", "checkin")


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes
    valid: bool


@dataclass
class Stream:
    tag: str
    bodies: list[dict[str, Any]] = field(default_factory=list)  # each valid scan once
    messages: list[Message] = field(default_factory=list)  # in delivery order
    duplicates: int = 0
    out_of_order: int = 0
    invalid: int = 0

    @property
    def id_numbers(self) -> set[str]:
        return {body["id_number"] for body in self.bodies}


def _journey(rng: random.Random, tag: str, number: int, id_number: str) -> list[dict[str, Any]]:
    """One worker's scans; the mix gives the oracle closed, held, broken and open loops."""
    start = timedelta(minutes=rng.randrange(0, 48 * 60))
    overrides: dict[str, dict[str, Any]] = {
        kind: {"scan_id": f"{tag}-{number}-{kind}"} for kind in KINDS
    }
    overrides["boarding"]["trip_id"] = f"T-{tag}-{number % 7}"
    overrides["checkin"]["enterprise_id"] = f"E-{tag}-{number % 5}"
    roll = rng.random()
    if roll < 0.05:
        overrides["arrival_check"]["temperature_c"] = 38.4  # fever on arrival: held
    elif roll < 0.08:
        overrides["departure_check"]["health_code"] = "red"  # must not board
    scans = four_scans(id_number, **overrides)
    if 0.08 <= roll < 0.16:
        scans = scans[: rng.randrange(1, 4)]  # the journey is not over yet
    elif 0.16 <= roll < 0.19:
        scans = [scan for scan in scans if scan["kind"] != "arrival_check"]  # a broken loop
    for scan in scans:
        scan["occurred_at"] = (datetime.fromisoformat(scan["occurred_at"]) + start).isoformat()
    return scans


def _bad_checksum(id_number: str) -> str:
    return id_number[:17] + ("0" if id_number[17] != "0" else "1")


def generate(
    tag: str,
    workers: int,
    *,
    seed: int,
    duplicate_rate: float = 0.10,
    out_of_order_rate: float = 0.05,
    invalid_rate: float = 0.01,
) -> Stream:
    rng = random.Random(seed)
    stream = Stream(tag)
    # (sort position, message): event-time order first, then the imperfections.
    placed: list[tuple[float, Message]] = []
    for number in range(workers):
        stream.bodies.extend(_journey(rng, tag, number, random_id_number()))
    stream.bodies.sort(key=lambda body: body["occurred_at"])
    key_of = {}
    for number, id_number in enumerate(sorted(stream.id_numbers)):
        key_of[id_number] = f"{tag}-w{number}".encode()  # never the plain ID on a topic key
    last_position: dict[str, int] = defaultdict(int)
    for position, body in enumerate(stream.bodies):
        last_position[body["id_number"]] = position
    for position, body in enumerate(stream.bodies):
        message = Message(
            topics.INPUT_TOPICS[body["kind"]],
            key_of[body["id_number"]],
            orjson.dumps(body),
            valid=True,
        )
        sort_at = float(position)
        last = last_position[body["id_number"]]
        if last > position and rng.random() < out_of_order_rate:
            sort_at = last + rng.uniform(0.5, 400)  # after a later event of the same worker
            stream.out_of_order += 1
        placed.append((sort_at, message))
        if rng.random() < duplicate_rate:
            placed.append((sort_at + rng.uniform(0.5, 2000), message))  # a resend, later
            stream.duplicates += 1
    span = len(stream.bodies)
    for number in range(round(span * invalid_rate)):
        kind = rng.choice(KINDS)
        if number % 2:
            value = b'{"scan_id": "' + f"{tag}-bad-json-{number}".encode() + b'", "kind": '
        else:
            body = four_scans(random_id_number())[KINDS.index(kind)]
            body["scan_id"] = f"{tag}-bad-checksum-{number}"
            body["id_number"] = _bad_checksum(body["id_number"])
            value = orjson.dumps(body)
        message = Message(topics.INPUT_TOPICS[kind], f"{tag}-bad".encode(), value, valid=False)
        placed.append((rng.uniform(0, span), message))
        stream.invalid += 1
    placed.sort(key=lambda item: item[0])
    stream.messages = [message for _, message in placed]
    return stream
