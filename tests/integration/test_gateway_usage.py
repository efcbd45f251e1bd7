"""UsageRecorder on the real broker: murmur2 placement, exactly once after flush, asyncio."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from capstream.gateway import AsyncUsageRecorder, UsageRecorder, partition_for
from capstream.gateway.wire import encode_event
from capstream.streams.records import UsageBatchRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics
from capstream.streams.usage_wire import encode_batch


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` now, read from the beginning of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[Any] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(at_end) < len(partitions) and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            if msg.error() is None:
                records.append(msg)
            elif msg.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
    consumer.close()
    assert len(at_end) == len(partitions), f"could not read {topic} to its end"
    return records


def usage(i: int, account: str) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "account_id": account,
        "bot_id": f"bot-{i % 3}",
        "conversation_id": f"conv-{i % 17}",
        "category": ("text", "vision", "audio", "documents")[i % 4],
        "model": "claude-haiku",
        "tokens_in": i,
        "tokens_out": 2 * i,
        "messages": 1,
        "credits_micro": 10 * i,
    }


def test_our_murmur2_places_events_where_librdkafka_does(kafka_bootstrap: str) -> None:
    topic = f"murmur-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 7, 1)])[topic].result(timeout=30)
    accounts = [f"acct-{i}" for i in range(300)] + [uuid.uuid4().hex for _ in range(200)]
    accounts += ["a", "ab", "abc", "ünïcødé-账户", "x" * 199]
    # A single-event producer in another language: one UsageBatch per event, keyed by the
    # account, no explicit partition (librdkafka's murmur2_random, Kafka's default, decides).
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random", "log_level": 0}
    )
    for n, account in enumerate(accounts):
        single = encode_batch(f"single-{n}", "other", 0, [_body(usage(n, account))])
        producer.produce(topic, single, account.encode())
    assert producer.flush(30) == 0
    # ...and our recorder, which computes the partition itself and names it explicitly.
    settings = Settings(kafka_bootstrap=kafka_bootstrap, usage_partitions=7)
    with UsageRecorder(settings, topic=topic, producer_name="ours") as recorder:
        for n, account in enumerate(accounts):
            recorder.record(**usage(10_000 + n, account))

    theirs: dict[str, int] = {}
    ours: dict[str, set[int]] = {}
    for msg in read_topic(kafka_bootstrap, topic):
        batch = UsageBatchRecord.from_bytes(msg.value())
        for event in batch.events:
            if batch.producer == "other":
                theirs[event.account_id] = msg.partition()
            else:
                ours.setdefault(event.account_id, set()).add(msg.partition())
    assert len(theirs) == len(ours) == len(accounts)
    assert {a: partition_for(a.encode(), 7) for a in accounts} == theirs
    assert {a: {p} for a, p in theirs.items()} == ours


def _body(event: dict[str, Any]) -> bytes:
    full = {
        "conversation_started": False,
        "occurred_at_ms": 1_790_000_000_000,
        "attributes": None,
        **event,
    }
    return encode_event(*(full[f] for f in EVENT_FIELDS))


EVENT_FIELDS = (
    "event_id",
    "account_id",
    "bot_id",
    "conversation_id",
    "category",
    "model",
    "tokens_in",
    "tokens_out",
    "messages",
    "conversation_started",
    "credits_micro",
    "occurred_at_ms",
    "attributes",
)


def test_recorded_usage_is_in_the_usage_topic_exactly_once_after_flush(topics: Settings) -> None:
    accounts = [f"acct-{a}" for a in range(40)]
    with UsageRecorder(topics, linger_ms=5, producer_name="it") as recorder:
        for i in range(6_000):
            assert recorder.record(**usage(i, accounts[i % len(accounts)]))
        assert recorder.flush(30) == 0
        stats = recorder.stats
    assert (stats.accepted, stats.delivered, stats.queued, stats.in_flight) == (6000, 6000, 0, 0)
    assert stats.batches < 600  # coalesced: far fewer records than events

    records = read_topic(topics.bootstrap_servers, Topics(topics.topic_prefix).usage)
    seen: Counter[str] = Counter()
    for msg in records:
        batch = UsageBatchRecord.from_bytes(msg.value())
        assert batch.producer == "it"
        assert msg.key().decode() == batch.events[0].account_id
        for ev in batch.events:  # every event sits on its account's murmur2 partition
            assert partition_for(ev.account_id.encode(), topics.usage_partitions) == (
                msg.partition()
            )
            seen[ev.event_id] += 1
    assert len(seen) == 6000
    assert set(seen.values()) == {1}
    # multi-account envelopes: one record carries events of several accounts
    assert max(len({e.account_id for e in UsageBatchRecord.from_bytes(m.value()).events})
               for m in records) > 1  # fmt: skip
    sample = next(
        e
        for m in records
        for e in UsageBatchRecord.from_bytes(m.value()).events
        if e.event_id == "e1234"
    )
    assert (sample.tokens_in, sample.credits_micro, sample.category) == (1234, 12340, "audio")


async def test_the_asyncio_recorder_flushes_without_blocking_the_loop(topics: Settings) -> None:
    async with AsyncUsageRecorder(topics, linger_ms=2) as recorder:
        for i in range(500):
            recorder.record(**usage(i, f"acct-{i % 5}"))
        assert await recorder.flush(30) == 0
        assert recorder.stats.delivered == 500
        recorder.record(**usage(999, "acct-late"))
    # close() delivered the last one
    records = read_topic(topics.bootstrap_servers, Topics(topics.topic_prefix).usage)
    ids = [e.event_id for m in records for e in UsageBatchRecord.from_bytes(m.value()).events]
    assert sorted(ids) == sorted([f"e{i}" for i in range(500)] + ["e999"])
