"""The consume loop against an in-memory store: once-only rows, commits, DLQ, back-pressure."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from sink_fakes import (
    CONTROL,
    USAGE,
    FakeBroker,
    FakeProducer,
    make_runner,
    usage_value,
)

from capstream.sinks.port import MemoryStorage
from capstream.sinks.runner import SinkRunner


def drive(runner: SinkRunner, until: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; stats={runner.stats}"
        runner.step(timeout=0)
        time.sleep(0.002)


def fill(broker: FakeBroker, per_partition: int, partitions: int = 3) -> int:
    for p in range(partitions):
        for n in range(per_partition):
            broker.append(USAGE.topic, p, usage_value(p * 1000 + n))
    return per_partition * partitions


def committed_all(broker: FakeBroker) -> Callable[[], bool]:
    return lambda: all(
        broker.committed.get(tp) == len(log)
        for tp, log in broker.logs.items()
        if tp[0] == USAGE.topic
    )


def test_every_record_is_written_once_and_committed_after_the_write() -> None:
    broker, storage = FakeBroker(), MemoryStorage()
    total = fill(broker, 40)
    runner, _ = make_runner(broker, storage, batch_bytes=2048)
    drive(runner, committed_all(broker))
    runner.close()
    rows = storage.rows["usage_events"]
    assert len(rows) == total
    assert len(set(rows)) == total
    # batches were cut by size, each its own token, offsets contiguous per partition
    tokens = [b.token for b in storage.writes]
    assert len(tokens) == len(set(tokens)) > 3
    for p in range(3):
        spans = sorted((b.first_offset, b.last_offset) for b in storage.writes if b.partition == p)
        assert spans[0][0] == 0 and spans[-1][1] == 39
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans))


def test_undecodable_records_go_to_the_dlq_with_their_offset_and_the_rest_lands() -> None:
    broker, storage, producer = FakeBroker(), MemoryStorage(), FakeProducer()
    broker.append(USAGE.topic, 0, usage_value(1))
    bad = broker.append(USAGE.topic, 0, b"not avro at all", key=b"acct-9")
    unknown = broker.append(USAGE.topic, 0, b"\xc3\x01" + b"\x00" * 8 + b"\x02")
    broker.append(USAGE.topic, 0, usage_value(2))
    runner, _ = make_runner(broker, storage, producer)
    drive(runner, committed_all(broker))
    runner.close()
    assert len(storage.rows["usage_events"]) == 2
    letters = {d.offset: d for d in producer.dead_letters()}
    assert set(letters) == {bad, unknown}
    assert letters[bad].reason == "not_avro"
    assert letters[bad].raw_value == b"not avro at all" and letters[bad].raw_key == b"acct-9"
    assert letters[unknown].reason == "unknown_schema"
    assert {t for t, _, _ in producer.sent} == {f"{USAGE.topic}.dlq"}
    assert runner.stats.dead_letters == 2


def test_a_record_the_store_rejects_is_isolated_and_dead_lettered() -> None:
    broker, producer = FakeBroker(), FakeProducer()
    poison_value = usage_value(13)
    storage = MemoryStorage(poison=lambda v: v == poison_value)
    for n in range(30):
        broker.append(USAGE.topic, 0, poison_value if n == 13 else usage_value(n))
    runner, _ = make_runner(broker, storage, producer, batch_bytes=1 << 20, flush_interval_s=0.2)
    drive(runner, committed_all(broker))
    runner.close()
    assert len(storage.rows["usage_events"]) == 29
    assert poison_value not in storage.rows["usage_events"]
    [letter] = producer.dead_letters()
    assert (letter.offset, letter.reason, letter.raw_value) == (13, "rejected", poison_value)
    assert runner.stats.rejected == 1


def test_offsets_stay_uncommitted_while_dead_letters_are_not_on_the_broker() -> None:
    broker, storage, producer = FakeBroker(), MemoryStorage(), FakeProducer()
    broker.append(USAGE.topic, 0, usage_value(1))
    broker.append(USAGE.topic, 0, b"garbage")
    producer.fail = True
    runner, _ = make_runner(broker, storage, producer)
    drive(runner, lambda: runner.stats.batches >= 1)
    for _ in range(2):
        runner.step(timeout=0)
    assert broker.committed == {}
    producer.fail = False
    drive(runner, committed_all(broker))
    runner.close()
    assert [d.offset for d in producer.dead_letters()] == [1]


def test_store_outage_pauses_reading_holds_commits_and_loses_nothing() -> None:
    broker, storage = FakeBroker(), MemoryStorage()
    total = fill(broker, 200, partitions=2)
    runner, consumer = make_runner(
        broker, storage, batch_bytes=1024, max_buffered_bytes=8 * 1024, poll_records=10
    )
    runner.step(timeout=0)  # assigned, intents read, the first records buffered
    storage.outage = True
    drive(runner, lambda: runner.paused)
    peak = 0
    for _ in range(200):
        runner.step(timeout=0)
        peak = max(peak, runner._buffered_bytes())
    assert broker.committed == {}
    assert sum(consumer.positions.values()) < total  # it stopped reading
    assert peak < 8 * 1024 + 10 * 200  # bounded: the limit plus what one poll adds
    storage.outage = False
    drive(runner, committed_all(broker))
    runner.close()
    assert not runner.paused and consumer.resume_calls >= 1
    assert len(storage.rows["usage_events"]) == total
    assert len(set(storage.rows["usage_events"])) == total


def test_a_restart_after_a_crash_writes_each_record_once() -> None:
    broker, storage = FakeBroker(), MemoryStorage()
    total = fill(broker, 60, partitions=2)
    first, _ = make_runner(broker, storage, batch_bytes=2500)
    drive(first, lambda: len(storage.rows.get("usage_events", [])) >= total // 2)
    # crash: the writer stops mid-stream; the offsets of written batches are not committed
    first.writer.stop(drain=False, timeout=1)
    broker.committed.clear()
    landed = len(storage.rows["usage_events"])
    assert 0 < landed < total
    second, _ = make_runner(broker, storage, batch_bytes=1100)  # other batch boundaries
    drive(second, committed_all(broker))
    second.close()
    rows = storage.rows["usage_events"]
    assert len(rows) == total and len(set(rows)) == total
    assert second.stats.replay_skipped > 0


def test_a_replay_from_offset_zero_adds_nothing() -> None:
    broker, storage = FakeBroker(), MemoryStorage()
    total = fill(broker, 25)
    runner, _ = make_runner(broker, storage)
    drive(runner, committed_all(broker))
    runner.close()
    writes = len(storage.writes)
    runner2, _ = make_runner(broker, storage, start_at={})
    drive(runner2, lambda: runner2.stats.replay_skipped + runner2.stats.written == total)
    runner2.close()
    assert len(storage.rows["usage_events"]) == total
    assert runner2.stats.replay_skipped + runner2.stats.written == total
    assert len(storage.writes) - writes <= 3  # at most the last batch per partition again


def test_tombstones_on_compacted_topics_are_skipped_not_dead_lettered() -> None:
    from capstream.streams.records import EnforcementStateRecord

    broker, storage, producer = FakeBroker(), MemoryStorage(), FakeProducer()
    state = EnforcementStateRecord(
        account_id="a", bot_id="b", version=1, updated_at_ms=1, model="claude-haiku"
    ).to_bytes()
    broker.append(CONTROL.topic, 0, state)
    broker.append(CONTROL.topic, 0, None)
    runner, _ = make_runner(broker, storage, producer)
    drive(runner, lambda: broker.committed.get((CONTROL.topic, 0)) == 2)
    runner.close()
    assert storage.rows["decisions"] == [state]
    assert producer.sent == [] and runner.stats.tombstones == 1


def test_the_batch_announced_before_a_crash_is_rebuilt_with_its_token() -> None:
    from capstream.sinks.batches import Intent

    broker, storage = FakeBroker(), MemoryStorage()
    fill(broker, 20, partitions=1)
    storage.saved_intents[(USAGE.topic, 0)] = Intent(5, 9, "announced-token")
    runner, _ = make_runner(broker, storage, start_at={})
    drive(runner, committed_all(broker))
    runner.close()
    first = storage.writes[0]
    assert (first.token, first.offsets) == ("announced-token", [5, 6, 7, 8, 9])
    assert runner.stats.replay_skipped == 5  # offsets 0-4 were written before the crash
    assert len(storage.rows["usage_events"]) == 15


def test_records_wait_for_the_store_before_their_partition_is_primed() -> None:
    broker, storage = FakeBroker(), MemoryStorage(outage=True)
    total = fill(broker, 10, partitions=2)
    runner, _ = make_runner(broker, storage)
    for _ in range(3):
        runner.step(timeout=0)
    assert runner.held and not runner.buffers  # intents unknown: nothing batched yet
    storage.outage = False
    drive(runner, committed_all(broker))
    runner.close()
    assert len(storage.rows["usage_events"]) == total


def test_while_the_store_is_slow_batches_grow_instead_of_queueing_up() -> None:
    import threading

    from capstream.sinks.batches import Batch
    from capstream.sinks.port import Rejected

    release = threading.Event()

    class SlowStorage(MemoryStorage):
        def write(self, batch: Batch) -> list[Rejected]:
            release.wait(10)
            return super().write(batch)

    broker, storage = FakeBroker(), SlowStorage()
    runner, _ = make_runner(broker, storage, poll_records=5)
    for n in range(100):
        broker.append(USAGE.topic, 0, usage_value(n))
        runner.step(timeout=0)
        time.sleep(0.003)  # every record is older than flush_interval_s by the next step
    assert runner.writer.queued_bytes > 0
    assert runner.buffers[(USAGE.topic, 0)].open is not None  # still growing, not queued
    release.set()
    drive(runner, committed_all(broker))
    runner.close()
    assert len(storage.rows["usage_events"]) == 100
    assert len(storage.writes) <= 4  # one in flight, one waiting, the grown rest


def test_queued_partitions_announce_their_intents_together() -> None:
    import threading

    from capstream.sinks.batches import Batch
    from capstream.sinks.port import Rejected

    release = threading.Event()

    class SlowStorage(MemoryStorage):
        def write(self, batch: Batch) -> list[Rejected]:
            release.wait(10)
            return super().write(batch)

    broker, storage = FakeBroker(), SlowStorage()
    for p in range(4):  # records over batch_bytes: each is a full batch, queued at once
        for n in range(5):
            broker.append(USAGE.topic, p, usage_value(p * 1000 + n, events=20))
    total = 20
    runner, _ = make_runner(broker, storage, batch_bytes=1024)
    for _ in range(20):
        runner.step(timeout=0)
        time.sleep(0.003)
    release.set()
    drive(runner, committed_all(broker))
    runner.close()
    assert len(storage.rows["usage_events"]) == total
    assert storage.announcements >= 1
    assert sum(b.announced for b in storage.writes) >= 3  # fewer intent inserts than batches
    # every partition's last batch is its recorded intent, as a restart expects
    last = {(b.topic, b.partition): b.intent for b in storage.writes}
    assert storage.saved_intents == last


def test_an_old_batch_is_sealed_when_its_lane_writes_it_next_oldest_first() -> None:
    import threading

    from capstream.sinks.batches import Batch
    from capstream.sinks.port import Rejected

    gate = threading.Semaphore(0)

    class GatedStorage(MemoryStorage):
        def write(self, batch: Batch) -> list[Rejected]:
            gate.acquire(timeout=10)
            return super().write(batch)

    broker, storage = FakeBroker(), GatedStorage()
    runner, _ = make_runner(broker, storage, flush_interval_s=0.001)
    submitted: list[Batch] = []
    submit = runner.writer.submit
    runner.writer.submit = lambda batch: (submitted.append(batch), submit(batch))[1]  # type: ignore[method-assign]
    for n in range(30):
        for p in range(3):
            broker.append(USAGE.topic, p, usage_value(p * 1000 + n))
        runner.step(timeout=0)
        time.sleep(0.003)
    # one batch being written, one waiting to be written next; the third partition's
    # batch keeps growing instead of queueing behind them
    assert len(submitted) == 2
    [rest] = {0, 1, 2} - {b.partition for b in submitted}
    assert len(runner.buffers[(USAGE.topic, rest)].open or []) == 30
    gate.release()  # the first write returns: the lane is free again
    deadline = time.monotonic() + 5
    while len(submitted) < 3:
        assert time.monotonic() < deadline
        runner.step(timeout=0)
        time.sleep(0.003)
    assert submitted[2].partition == rest  # the oldest open batch goes next
    assert len(submitted[2]) == 30
    gate.release(1000)
    drive(runner, committed_all(broker))
    runner.close()
    rows = storage.rows["usage_events"]
    assert len(rows) == len(set(rows)) == 90
