"""The sink on the real broker and chDB: bad events refused one by one as the worker refuses
them, a record near the broker's size limit dead-lettered, a defect in the intake costing
one record, and a fatal error ending the process with a non-zero status."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from sink_helpers import caught_up, count, read_dead_letters, sink_running, wait_for

from capstream.core.limits import MAX_ID
from capstream.sinks.intake import UsageIntake
from capstream.sinks.options import SinkOptions
from capstream.sinks.service import run_sink
from capstream.sinks.sql import run_sql
from capstream.streams.codecs import codec
from capstream.streams.partitioner import partition_for
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics
from capstream.streams.usage_decode import UsageDecoder
from capstream.streams.usage_wire import event_bodies

T = 1_790_000_000_000  # 2026-09-21, before any broker timestamp of the test run
USAGE = codec("UsageBatch")


def event(event_id: str, account: str = "acme", **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "account_id": account,
        "bot_id": "bot-1",
        "conversation_id": "conv-1",
        "category": "text",
        "model": "claude-haiku",
        "tokens_in": 10,
        "tokens_out": 5,
        "messages": 1,
        "conversation_started": False,
        "credits_micro": 1_000,
        "occurred_at_ms": T,
        "attributes": {},
        **overrides,
    }


def record(batch_id: str, events: list[dict[str, Any]]) -> bytes:
    return USAGE.encode({"batch_id": batch_id, "producer": "t", "sent_at_ms": T, "events": events})


def producer(settings: Settings) -> Producer:
    """Keys by account with Kafka's murmur2, as the SDK does (the worker's home partition)."""
    return Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "partitioner": "murmur2_random",
            "message.max.bytes": 1_048_576,
            "enable.idempotence": True,  # in order, once: the tests name offsets
        }
    )


def event_ids(settings: Settings) -> list[str]:
    rows = run_sql(settings, "SELECT event_id FROM usage_events ORDER BY event_id").rows
    return [str(r[0]) for r in rows]


def test_good_events_beside_bad_ones_land_and_each_bad_one_is_dead_lettered(
    topics: Settings,
) -> None:
    usage = Topics(topics.topic_prefix).usage
    hostile = record(
        "hostile",
        [
            event("good-1"),
            event("future", occurred_at_ms=4_102_444_800_000),  # 2100
            event("x" * (MAX_ID + 1)),
            event("utf8-XXXX"),
            event("messages", messages=2**31),
            event("negative", tokens_in=-1),
            event("good-2"),
            event("year-1970", occurred_at_ms=5),
            event("good-3"),
        ],
    ).replace(b"utf8-XXXX", b"utf8-\xff\xfe\xfd\xfc")
    home = partition_for(b"acme", 4)
    away = next(a for a in ("globex", "initech", "hooli") if partition_for(a.encode(), 4) != home)
    # a producer that keyed by something else: globex's event landed on acme's partition
    misplaced = record("mixed", [event("good-4"), event("away-1", away)])
    p = producer(topics)
    p.produce(usage, hostile, key=b"acme")
    p.produce(usage, misplaced, key=b"acme")
    p.produce(usage, record("after", [event("good-5")]), key=b"acme")
    # what the worker sends home for it: a one-event record on globex's partition
    p.produce(usage, record("mixed", [event("away-1", away)]), key=away.encode())
    assert p.flush(30) == 0
    with sink_running(topics, group_id="sink-events", flush_interval_s=0.2) as sink:
        wait_for(lambda: caught_up(topics, "sink-events", usage), 60, "commits")
        letters = read_dead_letters(topics, usage, expected=6)
    assert event_ids(topics) == ["away-1", "good-1", "good-2", "good-3", "good-4", "good-5"]
    stats = sink["stats"]
    assert (stats.bad_events, stats.misplaced, stats.rejected) == (6, 1, 0)
    assert sorted(x.reason for x in letters) == sorted(
        ["future_timestamp", "invalid", "invalid", "amount_too_large", "negative_amount", "invalid"]
    )
    assert {x.offset for x in letters} == {0}
    # each letter is one event, re-drivable alone; the worker's decoder refuses the same ones
    assert all(len(event_bodies(x.raw_value)) == 1 for x in letters)
    worker = UsageDecoder(1 << 20).decode(hostile, int(time.time() * 1000) + 300_000)
    assert [e.event_id for e in worker.events] == ["good-1", "good-2", "good-3"]
    assert sorted(b.raw for b in worker.bad) == sorted(x.raw_value for x in letters)


def test_an_undecodable_record_near_the_broker_limit_is_dead_lettered_and_the_sink_goes_on(
    topics: Settings,
) -> None:
    usage = Topics(topics.topic_prefix).usage
    huge = b"\x00not avro" + os.urandom(999_900)  # ~1 MB: the raw bytes + metadata do not fit
    p = producer(topics)
    p.produce(usage, record("before", [event("before")]), key=b"acme")
    p.produce(usage, huge, key=b"acme")
    p.produce(usage, record("after", [event("after")]), key=b"acme")
    assert p.flush(30) == 0
    with sink_running(topics, group_id="sink-huge", flush_interval_s=0.2) as sink:
        wait_for(lambda: caught_up(topics, "sink-huge", usage), 60, "commits past it")
        (letter,) = read_dead_letters(topics, usage, expected=1)
    assert event_ids(topics) == ["after", "before"]
    assert sink["stats"].dead_letters == 1
    assert (letter.reason, letter.offset) == ("not_avro", 1)
    assert letter.original_size == len(huge) + len(b"acme")
    assert letter.raw_value is not None and huge.startswith(letter.raw_value)
    assert len(letter.raw_value) < len(huge)


def test_an_exception_while_taking_in_a_record_dead_letters_it_and_the_sink_goes_on(
    topics: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = Topics(topics.topic_prefix).usage
    take = UsageIntake.take

    def defect(self: UsageIntake, value: bytes | None, partition: int, ts: int) -> Any:
        if value is not None and b"trips-a-bug" in value:
            raise ZeroDivisionError("division by zero (a defect)")
        return take(self, value, partition, ts)

    monkeypatch.setattr(UsageIntake, "take", defect)
    p = producer(topics)
    for name in ("one", "trips-a-bug", "two"):
        p.produce(usage, record(name, [event(name)]), key=b"acme")
    assert p.flush(30) == 0
    with sink_running(topics, group_id="sink-defect", flush_interval_s=0.2) as sink:
        wait_for(lambda: caught_up(topics, "sink-defect", usage), 60, "commits past it")
        (letter,) = read_dead_letters(topics, usage, expected=1)
    assert event_ids(topics) == ["one", "two"]
    assert sink["stats"].poison == 1
    assert (letter.reason, letter.offset) == ("processing_error", 1)
    assert letter.error.startswith("ZeroDivisionError: division by zero")


def test_a_dead_writer_thread_stops_the_sink_with_the_error(
    topics: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from capstream.sinks import writer

    def broken(self: Any) -> None:
        raise RuntimeError("the writer thread broke (a defect)")

    monkeypatch.setattr(writer._Lane, "_announce_upcoming", broken)
    p = producer(topics)
    p.produce(Topics(topics.topic_prefix).usage, record("one", [event("one")]), key=b"acme")
    assert p.flush(30) == 0
    out: dict[str, Any] = {}

    def target() -> None:
        options = SinkOptions(create_topics=False, flush_interval_s=0.1, group_id="sink-dies")
        try:
            run_sink(topics, options, stop=threading.Event())
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(90)
    assert not thread.is_alive(), "the sink kept running without its writer"
    assert "the writer thread broke" in str(out["error"])
    assert count(topics) == 0


def test_capstream_sink_exits_non_zero_with_the_error_on_stderr(
    topics: Settings, tmp_path: Path
) -> None:
    p = producer(topics)
    p.produce(Topics(topics.topic_prefix).usage, record("one", [event("one")]), key=b"acme")
    assert p.flush(30) == 0
    # ``capstream sink`` whose writer thread meets a defect (injected before the CLI runs)
    script = textwrap.dedent(
        """
        import sys
        from capstream.sinks import writer
        def broken(self):
            raise RuntimeError("the writer thread broke (a defect)")
        writer._Lane._announce_upcoming = broken
        from capstream.cli import main
        sys.argv = ["capstream", "sink", "--flush-interval", "0.1"]
        main()
        """
    )
    env = {
        **os.environ,
        "CAPSTREAM_KAFKA_BOOTSTRAP": topics.bootstrap_servers,
        "CAPSTREAM_TOPIC_PREFIX": topics.topic_prefix,
        "CAPSTREAM_DATA_DIR": str(topics.data_dir),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "the writer thread broke" in done.stderr
