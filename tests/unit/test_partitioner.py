"""The publisher partitions by Kafka's key hash: the same partition as every Kafka client."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.kafka.publisher import murmur2, partition_for


def test_murmur2_matches_the_java_clients_known_values() -> None:
    # Values from org.apache.kafka.common.utils.UtilsTest#testMurmur2.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFFFFFF, data


@given(st.binary(max_size=64))
def test_murmur2_equals_aiokafkas(data: bytes) -> None:
    from aiokafka.partitioner import murmur2 as reference

    assert murmur2(data) == reference(data)


def test_partition_for_equals_aiokafkas_default_partitioner() -> None:
    rng = random.Random(5)
    partitioner = DefaultPartitioner()
    for _ in range(2000):
        key = f"w_{rng.getrandbits(96):024x}".encode()
        count = rng.choice([1, 3, 4, 12])
        partitions = list(range(count))
        assert partition_for(key, count) == partitioner(key, partitions, partitions)
