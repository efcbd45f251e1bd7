"""Kafka's default partitioner for keyed records: ``toPositive(murmur2(key)) % partitions``."""

from __future__ import annotations

import random
from typing import Final

from mypy_extensions import i64

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` as a signed 32-bit int (the Java client's exact result).

    Compiled, the locals are native 64-bit ints (``i64``): every product is of two values
    below 2**32 and 2**31, so none overflows, and none takes the arbitrary-precision path a
    plain ``int`` takes above 2**62 (that path was a third of handing decisions over)."""
    length: i64 = len(data)
    h: i64 = (_SEED ^ length) & _MASK
    end: i64 = length & ~3
    i: i64 = 0
    k: i64
    while i < end:
        k = i64(data[i]) | (i64(data[i + 1]) << 8) | (i64(data[i + 2]) << 16)
        k |= i64(data[i + 3]) << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
        i += 4
    rest = length & 3
    if rest == 3:
        h ^= i64(data[end + 2]) << 16
    if rest >= 2:
        h ^= i64(data[end + 1]) << 8
    if rest >= 1:
        h ^= i64(data[end])
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return int(h - (1 << 32) if h & 0x80000000 else h)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (librdkafka ``murmur2_random``) picks."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def kafka_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's ``DefaultPartitioner``, compiled (the worker publishes a decision per few
    events; aiokafka's pure-Python murmur2 cost ~5% of its time). Keyless: any available."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]
