"""The sink's intake refuses exactly the events the worker refuses, one event at a time."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sink_fakes import FakeBroker, FakeProducer, make_runner

from capstream.core.limits import MAX_ID, MAX_MESSAGES
from capstream.errors import DecodeError
from capstream.sinks.frames import HEADER_LEN
from capstream.sinks.intake import UsageIntake
from capstream.sinks.port import MemoryStorage
from capstream.streams.codecs import MAGIC, codec
from capstream.streams.partitioner import partition_for
from capstream.streams.usage_decode import UsageDecoder

TS = 1_790_000_000_000  # the record's (broker) timestamp
USAGE = codec("UsageBatch")


def event(event_id: str, account: str = "acct-1", **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "account_id": account,
        "bot_id": "bot-1",
        "conversation_id": "conv-1",
        "category": "text",
        "model": "claude-haiku",
        "tokens_in": 3,
        "tokens_out": 4,
        "messages": 1,
        "conversation_started": False,
        "credits_micro": 10,
        "occurred_at_ms": TS - 1_000,
        "attributes": {},
        **overrides,
    }


def record(events: list[dict[str, Any]]) -> bytes:
    return USAGE.encode({"batch_id": "b", "producer": "p", "sent_at_ms": TS, "events": events})


def hostile() -> bytes:
    """Good events beside every kind of bad one (one of them invalid UTF-8)."""
    value = record(
        [
            event("good-1"),
            event("future", occurred_at_ms=4_102_444_800_000),  # 2100
            event("x" * (MAX_ID + 1)),
            event("utf8-XXXX"),
            event("messages", messages=2**31),
            event("negative", tokens_in=-1),
            event("good-2"),
            event("year-1970", occurred_at_ms=5),
            event("good-3", messages=MAX_MESSAGES),
        ]
    )
    return value.replace(b"utf8-XXXX", b"utf8-\xff\xfe\xfd\xfc")


def stored_ids(body: Any) -> list[str]:
    """The event ids of a stored body (the current-schema Avro body of a UsageBatch)."""
    decoded = USAGE.decode(MAGIC + USAGE.fingerprint + bytes(body))
    return [e["event_id"] for e in decoded["events"]]


def test_an_all_good_record_is_stored_as_sent_without_a_copy() -> None:
    value = record([event("a"), event("b")])
    intake = UsageIntake(USAGE).take(value, 0, TS)
    assert not intake.bad and intake.misplaced == 0
    assert isinstance(intake.body, memoryview) and intake.body.obj is value
    assert bytes(intake.body) == value[HEADER_LEN:]


def test_bad_events_are_refused_alone_with_the_workers_reasons() -> None:
    value = hostile()
    intake = UsageIntake(USAGE).take(value, 0, TS)
    assert intake.body is not None
    assert stored_ids(intake.body) == ["good-1", "good-2", "good-3"]
    reasons = [(b.position, b.reason) for b in intake.bad]
    assert reasons == [
        (1, "future_timestamp"),
        (2, "invalid"),
        (3, "invalid"),
        (4, "amount_too_large"),
        (5, "negative_amount"),
        (7, "invalid"),
    ]
    # the worker's decoder (the same code) counts exactly the events the sink stores
    worker = UsageDecoder(1 << 20).decode(value, TS + 300_000)
    assert [e.event_id for e in worker.events] == stored_ids(intake.body)
    assert [(b.position, b.reason, b.raw) for b in worker.bad] == [
        (b.position, b.reason, b.raw) for b in intake.bad
    ]
    # each dead letter holds its one event, re-drivable as a record of its own
    assert [len(USAGE.decode(b.raw)["events"]) for b in intake.bad[:2]] == [1, 1]


def test_the_time_bound_is_the_records_timestamp_not_the_clock() -> None:
    value = record([event("late", occurred_at_ms=TS + 299_000), event("early")])
    # read today, years after TS, or replayed: the same answer every time
    takes = [UsageIntake(USAGE).take(value, 0, TS) for _ in range(2)]
    assert [bytes(t.body or b"") for t in takes] == [value[HEADER_LEN:]] * 2
    # an earlier broker time makes the same event too far in the future
    shifted = UsageIntake(USAGE).take(value, 0, TS - 2_000)
    assert [b.reason for b in shifted.bad] == ["future_timestamp"]
    assert stored_ids(shifted.body) == ["early"]
    # no timestamp at all: only the 2200 bound, deterministically
    assert not UsageIntake(USAGE).take(value, 0, 0).bad


def test_events_of_accounts_homed_elsewhere_are_skipped_and_counted() -> None:
    homes = {a: partition_for(a.encode(), 4) for a in ("acct-1", "acct-2", "acct-3", "acct-4")}
    here = homes["acct-1"]
    away = next(a for a, p in homes.items() if p != here)
    value = record([event("a", "acct-1"), event("b", away), event("c", "acct-1")])
    intake = UsageIntake(USAGE, partitions=4).take(value, here, TS)
    assert intake.misplaced == 1 and not intake.bad
    assert stored_ids(intake.body) == ["a", "c"]
    # on its home partition the one-event record the worker re-sends is stored
    only_away = UsageIntake(USAGE, partitions=4).take(record([event("b", away)]), homes[away], TS)
    assert stored_ids(only_away.body) == ["b"]
    nothing = UsageIntake(USAGE, partitions=4).take(record([event("b", away)]), here, TS)
    assert nothing.body is None and nothing.misplaced == 1


def test_a_record_that_is_bad_as_a_whole_raises_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        UsageIntake(USAGE, max_record_bytes=1024).take(record([event("a")] * 40), 0, TS)
    assert info.value.reason == "too_large"
    with pytest.raises(DecodeError):
        UsageIntake(USAGE).take(record([event("a")])[:-3], 0, TS)


def test_the_runner_stores_the_good_events_and_dead_letters_each_bad_one() -> None:
    broker, storage, producer = FakeBroker(), MemoryStorage(), FakeProducer()
    usage = "unit.usage"
    broker.append(usage, 0, hostile())
    broker.append(usage, 0, record([event("g-4")]))
    runner, _ = make_runner(broker, storage, producer)
    deadline = 200
    while broker.committed.get((usage, 0)) != 2 and deadline:
        runner.step(timeout=0)
        deadline -= 1
        time.sleep(0.01)
    runner.close()
    assert broker.committed[(usage, 0)] == 2
    rows = storage.writes
    bodies = [b for batch in rows for b in batch.bodies]
    assert [i for body in bodies for i in stored_ids(body)] == ["good-1", "good-2", "good-3", "g-4"]
    letters = producer.dead_letters()
    assert [(x.offset, x.reason) for x in letters] == [
        (0, "future_timestamp"),
        (0, "invalid"),
        (0, "invalid"),
        (0, "amount_too_large"),
        (0, "negative_amount"),
        (0, "invalid"),
    ]
    assert runner.stats.bad_events == 6 and runner.stats.dead_letters == 6


def test_an_exception_in_the_intake_dead_letters_the_record_and_the_sink_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker, storage, producer = FakeBroker(), MemoryStorage(), FakeProducer()
    usage = "unit.usage"
    for n in range(3):
        broker.append(usage, 0, record([event(f"e{n}")]))
    take = UsageIntake.take

    def buggy(self: UsageIntake, value: bytes | None, partition: int, ts: int) -> Any:
        if value is not None and b"e1" in value:
            raise RuntimeError("a defect")
        return take(self, value, partition, ts)

    monkeypatch.setattr(UsageIntake, "take", buggy)
    runner, _ = make_runner(broker, storage, producer)
    for _ in range(200):
        if broker.committed.get((usage, 0)) == 3:
            break
        runner.step(timeout=0)
        time.sleep(0.01)
    runner.close()
    assert broker.committed[(usage, 0)] == 3
    bodies = [b for batch in storage.writes for b in batch.bodies]
    assert [i for body in bodies for i in stored_ids(body)] == ["e0", "e2"]
    (letter,) = producer.dead_letters()
    assert (letter.offset, letter.reason) == (1, "processing_error")
    assert "RuntimeError: a defect" in letter.error
    assert runner.stats.poison == 1


def test_a_writer_thread_that_dies_stops_the_runner_with_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from capstream.sinks import writer
    from capstream.sinks.runner import SinkFailedError

    def broken(self: Any) -> None:
        raise RuntimeError("writer defect")

    monkeypatch.setattr(writer._Lane, "_announce_upcoming", broken)
    broker, storage = FakeBroker(), MemoryStorage()
    broker.append("unit.usage", 0, record([event("a")]))
    runner, _ = make_runner(broker, storage)

    def until_it_raises() -> None:
        for _ in range(500):
            runner.step(timeout=0)
            time.sleep(0.01)

    with pytest.raises(SinkFailedError, match="RuntimeError: writer defect"):
        until_it_raises()
    runner.close()
    assert storage.rows == {} and broker.committed == {}
