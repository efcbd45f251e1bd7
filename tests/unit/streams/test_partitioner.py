"""murmur2 must equal Kafka's, or events would land where single-event producers do not."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.gateway import murmur2, partition_for
from capstream.streams.partitioner import kafka_partitioner

# Apache Kafka's UtilsTest.testMurmur2 vectors (signed 32-bit, as the Java client returns).
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS.items())
def test_murmur2_equals_the_java_clients(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_is_the_positive_hash_modulo_the_partition_count() -> None:
    # "21" hashes negative: toPositive clears the sign bit rather than taking abs().
    assert partition_for(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert partition_for(b"21", 7) != abs(-973932308) % 7
    assert {partition_for(f"acct-{i}".encode(), 4) for i in range(200)} == {0, 1, 2, 3}


def test_a_topic_without_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for(b"a", 0)


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.lists(st.integers(0, 50), min_size=1, max_size=12, unique=True))
def test_the_workers_partitioner_is_aiokafkas_default(key: bytes, partitions: list[int]) -> None:
    """Decisions keep landing where every other Kafka client puts their key."""
    assert kafka_partitioner(key, partitions, partitions[:1]) == DefaultPartitioner()(
        key, partitions, partitions[:1]
    )


def test_a_keyless_record_goes_to_an_available_partition() -> None:
    assert {kafka_partitioner(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {kafka_partitioner(None, [0, 1], []) for _ in range(50)} == {0, 1}
