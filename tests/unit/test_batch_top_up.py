"""When a fetched batch is topped up with what reached the broker after it."""

from __future__ import annotations

from shared.adapters.kafka.consumer import BUFFERED_S, STALE_MS, worth_topping_up

NOW_MS = 1_800_000_000_000.0


def test_a_batch_that_waited_in_the_buffer_while_records_aged_is_topped_up() -> None:
    assert worth_topping_up(
        count=40, max_records=2000, newest_ms=int(NOW_MS) - 30, now_ms=NOW_MS, waited_s=0.0
    )


def test_a_batch_of_records_just_produced_is_not() -> None:
    assert not worth_topping_up(
        count=40,
        max_records=2000,
        newest_ms=int(NOW_MS) - (STALE_MS - 1),
        now_ms=NOW_MS,
        waited_s=0.0,
    )


def test_a_batch_the_consumer_waited_for_is_fresh_however_old_its_records() -> None:
    # A scan that lingered in its producer (the API's 5 ms) and came by a fetch just now.
    assert not worth_topping_up(
        count=1,
        max_records=2000,
        newest_ms=int(NOW_MS) - 30,
        now_ms=NOW_MS,
        waited_s=BUFFERED_S * 20,
    )


def test_a_full_batch_is_a_backlog_and_is_not_topped_up() -> None:
    assert not worth_topping_up(
        count=2000, max_records=2000, newest_ms=int(NOW_MS) - 30, now_ms=NOW_MS, waited_s=0.0
    )
