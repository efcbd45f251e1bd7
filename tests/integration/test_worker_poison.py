"""Hostile records on the real broker: the worker dead-letters them, stays up, counts the good
events around them exactly once, sends misplaced events home, and keeps its memory flat.

One worker subprocess serves the module; each test uses its own accounts (issues 20, 21).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from test_worker_harness import Config, ControlLog, TopicLog, WorkerProcess, account_on, wait_for

from capstream.streams.avro_bytes import long_bytes, string_bytes
from capstream.streams.partitioner import partition_for
from capstream.streams.records import DeadLetterRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics
from capstream.streams.usage_wire import encode_batch

PARTITIONS = 4


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=Path(tmp_path_factory.mktemp("poison")),
        usage_partitions=PARTITIONS,
        control_partitions=PARTITIONS,
    )
    create_topics(settings)
    return settings


@pytest.fixture(scope="module")
def worker(deployment: Settings) -> Iterator[WorkerProcess]:
    w = WorkerProcess(deployment)
    yield w
    assert w.proc.poll() is None, f"the worker died:\n{w.log()}"
    assert w.stop() == 0, w.log()


@pytest.fixture(scope="module")
def control(deployment: Settings) -> Iterator[ControlLog]:
    log = ControlLog(deployment)
    yield log
    log.close()


@pytest.fixture(scope="module")
def dlq(deployment: Settings) -> Iterator[TopicLog]:
    log = TopicLog(deployment, Topics.dlq(Topics(deployment.topic_prefix).usage))
    yield log
    log.close()


@pytest.fixture(scope="module")
def producer(deployment: Settings) -> Producer:
    return Producer(
        {**deployment.librdkafka_config(), "acks": "all", "message.max.bytes": 1_048_000}
    )


@pytest.fixture
def config(deployment: Settings, worker: WorkerProcess) -> Config:
    return Config(deployment, worker)


def body(
    eid: str,
    account: str,
    *,
    credits: int = 1_000,
    tokens_in: bytes | None = None,
    category: bytes = b"\x00",
    flag: bytes = b"\x00",
    t: int | None = None,
    model: str = "m",
) -> bytes:
    """One event's Avro body, any field as raw bytes: what a producer without the SDK sends."""
    t = int(time.time() * 1000) if t is None else t
    return b"".join(
        [*map(string_bytes, (eid, account, "bot-1", "conv-1")), category, string_bytes(model),
         tokens_in if tokens_in is not None else long_bytes(10), long_bytes(0), long_bytes(1),
         flag, long_bytes(credits), long_bytes(t), b"\x00"]
    )  # fmt: skip


def send(producer: Producer, topic: str, account: str, value: bytes, partition: int = -1) -> None:
    kw = {"partition": partition} if partition >= 0 else {}
    producer.produce(topic, value, account.encode(), **kw)
    assert producer.flush(20) == 0


def dead(dlq: TopicLog, account: str) -> list[DeadLetterRecord]:
    letters = [DeadLetterRecord.from_bytes(v) for _, _, v in dlq.records]
    return [d for d in letters if account.encode() in (d.raw_key or b"")]


def committed(settings: Settings, partition: int) -> int:
    topic = Topics(settings.topic_prefix).usage
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                  "group.id": f"{settings.topic_prefix}.processors"})  # fmt: skip
    try:
        [tp] = c.committed([TopicPartition(topic, partition)], timeout=10)
        return int(tp.offset)
    finally:
        c.close()


def end_offset(settings: Settings, partition: int) -> int:
    topic = Topics(settings.topic_prefix).usage
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "probe"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        c.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_unbounded_amounts_and_malformed_events_are_dead_lettered_and_the_rest_counts_once(
    deployment: Settings, config: Config, control: ControlLog, dlq: TopicLog,
    producer: Producer, worker: WorkerProcess,
) -> None:  # fmt: skip
    """Items 20.1-20.3 and 21.7: 2**63 tokens, two events whose sum overflows int64, a 70-bit
    varint, a negative enum index, a boolean byte of 2 and a 1970 time crashed the worker in
    a loop or were counted; each is now refused alone, and only the good events count."""
    usage = Topics(deployment.topic_prefix).usage
    acct = f"a-{uuid.uuid4().hex[:8]}"
    config.settings(acct, plan="pro", caps={"text": {"daily_micro": 3_000}})
    big = long_bytes((1 << 63) - 1)
    records = [
        [body("good-1", acct), body("max-tokens", acct, tokens_in=big)],
        [body("half-1", acct, credits=1 << 62), body("half-2", acct, credits=1 << 62)],
        [body("wide", acct, tokens_in=b"\xff" * 9 + b"\x7f"), body("good-2", acct)],
        [body("enum", acct, category=long_bytes(-1)), body("bool", acct, flag=b"\x02"),
         body("y1970", acct, t=1_000)],
    ]  # fmt: skip
    for events in records:
        send(producer, usage, acct, encode_batch("b", "hostile", 0, events))
    letters = wait_for(lambda: len(dead(dlq, acct)) >= 7 and dead(dlq, acct), 60, "7 letters")
    reasons = sorted((codec_event_id(d), d.reason) for d in letters)
    assert reasons == [
        ("bool", "invalid"), ("enum", "invalid"), ("half-1", "amount_too_large"),
        ("half-2", "amount_too_large"), ("max-tokens", "amount_too_large"),
        ("wide", "invalid"), ("y1970", "invalid"),
    ]  # fmt: skip
    # 2,000 of a 3,000 cap: not capped. One more good event caps it: each counted once.
    first = control.wait(acct, "bot-1", lambda s: True)
    assert "text" not in first.caps
    send(producer, usage, acct, encode_batch("b", "ok", 0, [body("good-3", acct)]))
    capped = control.wait(acct, "bot-1", lambda s: "text" in s.caps)
    assert capped.caps["text"].period == "daily"
    assert worker.proc.poll() is None
    home = partition_for(acct.encode(), PARTITIONS)
    end = end_offset(deployment, home)
    wait_for(lambda: committed(deployment, home) >= end, 30, "the offsets to move past them")


def codec_event_id(letter: DeadLetterRecord) -> str:
    from capstream.streams.codecs import codec

    return str(codec("UsageBatch").decode(letter.raw_value)["events"][0]["event_id"])


def test_a_record_near_the_broker_limit_is_dead_lettered_cut_to_fit(
    deployment: Settings, config: Config, control: ControlLog, dlq: TopicLog,
    producer: Producer, worker: WorkerProcess,
) -> None:  # fmt: skip
    """Items 20.4 / 21.3: its dead letter (raw bytes plus metadata) was larger than the broker
    takes; it is cut, keeps the original size and hash, and the good record after it counts."""
    import hashlib

    usage = Topics(deployment.topic_prefix).usage
    acct = f"a-{uuid.uuid4().hex[:8]}"
    config.settings(acct, plan="pro", caps={"text": {"daily_micro": 1_000}})
    garbage = b"\xc3\x01" + os.urandom(1_040_000)
    send(producer, usage, acct, garbage)
    send(producer, usage, acct, encode_batch("b", "ok", 0, [body("after", acct)]))
    capped = control.wait(acct, "bot-1", lambda s: "text" in s.caps)
    assert capped.caps["text"].period == "daily"
    [letter] = wait_for(lambda: dead(dlq, acct), 30, "the dead letter")
    assert letter.reason == "unknown_schema"
    assert letter.original_size == len(acct) + len(garbage)
    assert letter.original_sha256 == hashlib.sha256(acct.encode() + garbage).hexdigest()
    assert garbage.startswith(letter.raw_value or b"-")
    assert worker.proc.poll() is None


def test_events_on_a_partition_not_their_accounts_are_sent_home_and_counted_once(
    deployment: Settings, config: Config, control: ControlLog, producer: Producer,
    worker: WorkerProcess,
) -> None:  # fmt: skip
    """Item 20.5: a daily cap of 10,000 was passed at 12,000 credits (6,000 on each of two
    partitions). A misplaced event now goes to its account's partition and counts there."""
    usage = Topics(deployment.topic_prefix).usage
    acct = account_on(2, PARTITIONS, f"a-{uuid.uuid4().hex[:6]}")
    config.settings(acct, plan="pro", caps={"text": {"daily_micro": 12_500}})
    before = worker.metric("capstream_processor_events_total")
    rerouted = worker.metric("capstream_processor_rerouted_events_total")
    send(producer, usage, acct, encode_batch("b", "x", 0, [body("away", acct, credits=6_000)]), 0)
    send(producer, usage, acct, encode_batch("b", "x", 0, [body("home", acct, credits=6_000)]), 2)
    wait_for(
        lambda: worker.metric("capstream_processor_events_total") >= before + 2,
        30, "both events to be applied",
    )  # fmt: skip
    assert worker.metric("capstream_processor_rerouted_events_total") == rerouted + 1
    time.sleep(0.5)
    assert "text" not in (control.latest(acct, "bot-1") or control.wait(acct, "bot-1", bool)).caps
    send(producer, usage, acct, encode_batch("b", "x", 0, [body("last", acct, credits=500)]), 2)
    capped = control.wait(acct, "bot-1", lambda s: "text" in s.caps)  # 12,500: counted once
    assert capped.caps["text"].period == "daily"


def test_memory_stays_flat_under_distinct_huge_strings(
    deployment: Settings, dlq: TopicLog, producer: Producer, worker: WorkerProcess
) -> None:
    """Item 20.6: 200 records with distinct ~1 MB models grew the worker by ~2.7 MiB each.

    Flat means the second hundred adds next to nothing once the first hundred has warmed the
    allocator (its arenas keep some freed memory: the total alone varied with the host's
    load, 107 MiB once in a full run); the defect grew ~270 MiB per hundred."""
    usage = Topics(deployment.topic_prefix).usage
    acct = f"a-{uuid.uuid4().hex[:8]}"
    rss = [rss_mib(worker.proc.pid)]
    letters_before = len(dlq.records)
    for i in range(200):
        model = f"{i:04d}" + "m" * 600_000
        send(producer, usage, acct, encode_batch("b", "x", 0, [body(f"e{i}", acct, model=model)]))
        if i % 100 == 99:
            wait_for(lambda n=i + 1: len(dlq.records) >= letters_before + n, 120,
                     f"{i + 1} dead letters")  # fmt: skip
            rss.append(rss_mib(worker.proc.pid))
    first, second = rss[1] - rss[0], rss[2] - rss[1]
    assert second < 40, f"the second hundred grew the worker by {second:.0f} MiB"
    assert first + second < 200, f"the worker grew by {first + second:.0f} MiB"
    assert worker.proc.poll() is None


def test_cap_hits_on_another_partition_roll_up_in_their_accounts_feed_row(
    deployment: Settings, config: Config, producer: Producer, worker: WorkerProcess
) -> None:
    """A cap hit keyed by something else counted on its own feed row (attempts split)."""
    from capstream.streams.codecs import codec
    from capstream.streams.records import FeedRowRecord

    topics = Topics(deployment.topic_prefix)
    acct = account_on(1, PARTITIONS, f"a-{uuid.uuid4().hex[:6]}")
    config.settings(acct, plan="pro")
    feed = TopicLog(deployment, topics.feed)
    try:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        for hit_id, partition in (("h1", 3), ("h2", 1)):
            hit = codec("CapHit").encode({
                "hit_id": hit_id, "account_id": acct, "bot_id": "bot-1",
                "conversation_id": "conv-9", "category": "text", "period": "daily",
                "period_key": day, "occurred_at_ms": int(time.time() * 1000),
            })  # fmt: skip
            send(producer, topics.caphits, acct, hit, partition)

        def rows() -> list[FeedRowRecord]:
            out = [FeedRowRecord.from_bytes(v) for _, v in feed.of(topics.feed) if v]
            return [r for r in out if r.account_id == acct]

        wait_for(lambda: any(r.attempts == 2 for r in rows()), 30, "one row with 2 attempts")
        assert max(r.attempts for r in rows()) == 2
    finally:
        feed.close()
