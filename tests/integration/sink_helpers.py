"""Helpers of the sink's integration tests: usage producers, Python-side sums, waiting."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from capstream.sinks.options import SinkOptions
from capstream.sinks.service import run_sink
from capstream.sinks.sql import run_sql
from capstream.streams.codecs import codec
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

BASE_MS = 1_790_000_000_000  # 2026-09-21 14:13:20 UTC
CATEGORIES = ("text", "vision", "audio", "documents")
MODELS = ("claude-sonnet-4-6", "claude-haiku")


def usage_records(events: int, per_record: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """``(account_id, UsageBatch dict)`` covering ``events`` events over a few hours."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    n = 0
    while n < events:
        account = f"acct-{rng.randrange(12)}"
        batch = []
        for _ in range(min(per_record, events - n)):
            batch.append(
                {
                    "event_id": f"ev-{seed}-{n}",
                    "account_id": account,
                    "bot_id": f"bot-{rng.randrange(4)}",
                    "conversation_id": f"conv-{rng.randrange(40)}",
                    "category": rng.choice(CATEGORIES),
                    "model": rng.choice(MODELS),
                    "tokens_in": rng.randrange(2000),
                    "tokens_out": rng.randrange(800),
                    "messages": rng.randrange(3),
                    "conversation_started": rng.random() < 0.1,
                    "credits_micro": rng.randrange(50_000),
                    "occurred_at_ms": BASE_MS + rng.randrange(5 * 3_600_000),
                    "attributes": {"channel": "web"} if n % 5 == 0 else {},
                }
            )
            n += 1
        out.append((account, {"batch_id": f"b{seed}-{n}", "sent_at_ms": BASE_MS, "events": batch}))
    return out


def produce_usage(
    settings: Settings, records: list[tuple[str, dict[str, Any]]], *, pace_s: float = 0.0
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 2,
        }
    )
    topic = Topics(settings.topic_prefix).usage
    encode = codec("UsageBatch").encode
    for account, batch in records:
        producer.produce(topic, encode(batch), key=account.encode())
        producer.poll(0)
        if pace_s:
            time.sleep(pace_s)
    assert producer.flush(30) == 0


def hourly_sums(
    records: list[tuple[str, dict[str, Any]]],
) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """What ``usage_hourly`` must hold: sums per (hour, account, bot, category, model)."""
    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 6)
    for _, batch in records:
        for e in batch["events"]:
            hour = e["occurred_at_ms"] // 3_600_000 * 3600
            key = (hour, e["account_id"], e["bot_id"], e["category"], e["model"])
            s = sums[key]
            s[0] += 1
            s[1] += e["tokens_in"]
            s[2] += e["tokens_out"]
            s[3] += e["messages"]
            s[4] += int(e["conversation_started"])
            s[5] += e["credits_micro"]
    return {k: tuple(v) for k, v in sums.items()}


HOURLY_SQL = (
    "SELECT toUnixTimestamp(hour), account_id, bot_id, category, model, sum(events), "
    "sum(tokens_in), sum(tokens_out), sum(messages), sum(conversations), sum(credits_micro) "
    "FROM usage_hourly GROUP BY hour, account_id, bot_id, category, model"
)
DAILY_TOTALS_SQL = (
    "SELECT sum(events), sum(tokens_in), sum(credits_micro), sum(conversations) FROM usage_daily"
)


def table_hourly(settings: Settings) -> dict[tuple[Any, ...], tuple[int, ...]]:
    rows = run_sql(settings, HOURLY_SQL).rows
    return {tuple(r[:5]): tuple(int(x) for x in r[5:]) for r in rows}


def python_daily_totals(records: list[tuple[str, dict[str, Any]]]) -> list[int]:
    events = [e for _, b in records for e in b["events"]]
    return [
        len(events),
        sum(e["tokens_in"] for e in events),
        sum(e["credits_micro"] for e in events),
        sum(int(e["conversation_started"]) for e in events),
    ]


def count(settings: Settings, table: str = "usage_events") -> int:
    return int(run_sql(settings, f"SELECT count() FROM {table}").rows[0][0])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (absent = none)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        tps = [TopicPartition(topic, p) for p in meta.partitions]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "probe"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
    finally:
        consumer.close()


def caught_up(settings: Settings, group: str, topic: str) -> bool:
    """True once ``group`` committed the end of every non-empty partition of ``topic``."""
    ends = {p: o for p, o in end_offsets(settings, topic).items() if o > 0}
    try:
        done = committed(settings, group, topic)
    except KafkaException:  # e.g. the group's coordinator is still loading: ask again later
        return False
    return all(done.get(p) == o for p, o in ends.items())


@contextmanager
def sink_running(settings: Settings, **options: Any) -> Iterator[dict[str, Any]]:
    """Run the sink in a thread; yields a dict that gets ``stats`` once it stopped."""
    opts = SinkOptions(
        **{"create_topics": False, "flush_interval_s": 0.1, "stats_interval_s": 3600, **options}
    )
    stop, ready = threading.Event(), threading.Event()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["stats"] = run_sink(settings, opts, stop=stop, ready=ready)
        except BaseException as exc:  # surfaced by the test thread below
            out["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, name="sink-under-test")
    thread.start()
    ready.wait(60)
    try:
        if "error" in out:
            raise out["error"]
        yield out
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the sink did not stop"
    if "error" in out:
        raise out["error"]


def read_dead_letters(settings: Settings, topic: str, expected: int) -> list[Any]:
    """The DeadLetterRecords on ``<topic>.dlq`` (waits for ``expected`` of them)."""
    from capstream.streams.records import DeadLetterRecord

    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"dlq-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([Topics.dlq(topic)])
    got: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(DeadLetterRecord.from_bytes(msg.value()))
    finally:
        consumer.close()
    return got
