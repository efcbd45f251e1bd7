"""Batches per partition: deterministic tokens, and the pinned range rebuilt after a crash."""

from __future__ import annotations

from sink_fakes import USAGE

from capstream.sinks.batches import Batch, Intent, PartitionBuffer
from capstream.sinks.port import MemoryStorage, insert_isolating
from capstream.sinks.store import RowsRejectedError


def _add(buf: PartitionBuffer, offset: int, size: int = 10) -> list[Batch]:
    keep, sealed = buf.admit(offset)
    if keep:
        assert buf.open is not None
        buf.open.add(offset, None, b"v%d" % offset, b"x" * size, 0)
        pinned = buf.after_record(offset)
        if pinned is not None:
            sealed.append(pinned)
    return sealed


def test_the_token_names_topic_partition_and_offsets() -> None:
    buf = PartitionBuffer(USAGE, 3, None)
    for offset in range(7, 12):
        _add(buf, offset)
    batch = buf.seal_all(None)
    assert batch is not None
    assert batch.token == f"{USAGE.topic}:3:7-11"
    assert batch.intent == Intent(7, 11, batch.token)


def test_size_and_age_seal_a_batch() -> None:
    buf = PartitionBuffer(USAGE, 0, None)
    _add(buf, 0, size=50)
    assert buf.seal_due(buf.open.opened_at + 0.1, 100, 1.0, None) is None  # type: ignore[union-attr]
    _add(buf, 1, size=60)
    assert buf.seal_due(0, 100, 1.0, None) is not None  # 110 bytes >= 100
    _add(buf, 2)
    opened = buf.open.opened_at  # type: ignore[union-attr]
    assert buf.seal_due(opened + 1.5, 100, 1.0, None) is not None  # older than 1 s


def test_recovery_skips_written_records_and_rebuilds_the_announced_batch() -> None:
    buf = PartitionBuffer(USAGE, 0, Intent(10, 14, "old-token"))
    assert all(_add(buf, o) == [] for o in range(5, 10))
    assert buf.skipped == 5 and buf.open is None
    sealed = [b for o in range(10, 15) for b in _add(buf, o)]
    assert [(b.token, b.offsets) for b in sealed] == [("old-token", [10, 11, 12, 13, 14])]
    _add(buf, 15)
    assert buf.open is not None and buf.open.token == f"{USAGE.topic}:0:15-15"


def test_a_pinned_batch_waits_for_its_whole_range() -> None:
    buf = PartitionBuffer(USAGE, 0, Intent(10, 14, "old-token"))
    _add(buf, 10)
    _add(buf, 11)
    # old and big, but offsets 12-14 are not read yet: it must not be written short
    assert buf.seal_due(1e12, 1, 0.001, position=12) is None
    assert buf.seal_all(position=12) is None  # dropped, to be read again
    buf = PartitionBuffer(USAGE, 0, Intent(10, 14, "old-token"))
    _add(buf, 10)  # 11-14 compacted away: the position moved past the range
    batch = buf.seal_due(0, 1 << 20, 100, position=20)
    assert batch is not None and batch.token == "old-token" and batch.offsets == [10]


def test_a_record_past_the_pinned_range_seals_it() -> None:
    buf = PartitionBuffer(USAGE, 0, Intent(10, 14, "old-token"))
    _add(buf, 12)
    sealed = _add(buf, 20)
    assert [b.token for b in sealed] == ["old-token"]
    assert buf.pin is None


def test_isolation_splits_until_the_poison_is_alone_with_repeatable_tokens() -> None:
    buf = PartitionBuffer(USAGE, 0, None)
    for offset in range(8):
        _add(buf, offset)
    batch = buf.seal_all(None)
    assert batch is not None
    calls: list[tuple[int, int, str]] = []

    def insert(lo: int, hi: int, token: str) -> None:
        calls.append((lo, hi, token))
        if lo <= 5 < hi:
            raise RowsRejectedError("Code: 469. constraint")

    rejected = insert_isolating(insert, batch)
    assert [(r.index, r.offset) for r in rejected] == [(5, 5)]
    again: list[tuple[int, int, str]] = []
    calls, first = again, calls
    insert_isolating(insert, batch)
    assert again == first  # a retry uses exactly the same sub-ranges and tokens
    assert len({token for _, _, token in first}) == len(first)


def test_memory_storage_drops_a_repeated_token_like_clickhouse() -> None:
    storage = MemoryStorage()
    buf = PartitionBuffer(USAGE, 0, None)
    _add(buf, 0)
    batch = buf.seal_all(None)
    assert batch is not None
    storage.write(batch)
    storage.write(batch)
    assert storage.rows["usage_events"] == [b"v0"]
