"""ControlView and Gateway on the real broker: rebuild, live updates, fallback, cap hits."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from capstream.core.models import CapStatus, EnforcementState
from capstream.gateway import ControlView, Gateway
from capstream.streams.control_wire import control_key, record_from_state
from capstream.streams.records import CapHitRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

NOW = int(time.time() * 1000)
LATER = NOW + 3_600_000


def state(account: str, bot: str, version: int, **changes: Any) -> EnforcementState:
    fields: dict[str, Any] = {
        "account_id": account,
        "bot_id": bot,
        "version": version,
        "updated_at_ms": NOW,
        "blocked_until_ms": None,
        "block_policy_id": None,
        "model": "claude-sonnet-4-6",
        "downgraded_until_ms": None,
        "batching_interval_s": 3,
        "throttled_until_ms": None,
        "throttle_reason": None,
        "caps": {},
        "plan": "pro",
        "fallback_text_daily": "Thanks! We're on a quick break - back tomorrow!",
        "fallback_text_monthly": "Back next month!",
    }
    fields.update(changes)
    return EnforcementState(**fields)


def control_producer(settings: Settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "partitioner": "murmur2_random",
            "linger.ms": 0,
            "log_level": 0,
        }
    )


def publish(producer: Producer, settings: Settings, s: EnforcementState | None, key: bytes) -> None:
    value = record_from_state(s).to_bytes() if s is not None else None
    producer.produce(Topics(settings.topic_prefix).control, value, key)


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def test_a_fresh_view_rebuilds_the_latest_state_of_every_bot(topics: Settings) -> None:
    producer = control_producer(topics)
    expected: dict[tuple[str, str], int] = {}
    for a in range(10):
        for b in range(20):
            account, bot = f"acct-{a}", f"bot-{b}"
            versions = [1, 3, 2] if b % 2 else [1, 2, 3]  # an old straggler after the newest
            for v in versions:
                publish(producer, topics, state(account, bot, v), control_key(account, bot))
            expected[(account, bot)] = 3
    publish(producer, topics, state("acct-0", "gone", 1), control_key("acct-0", "gone"))
    publish(producer, topics, None, control_key("acct-0", "gone"))  # tombstone
    producer.produce(Topics(topics.topic_prefix).control, b"not avro", b"acct-0/bad")
    assert producer.flush(30) == 0

    with ControlView(topics) as view:
        assert view.wait_ready(30)
        assert {k: s.version for k, s in view.states.items()} == expected
        assert view.stats.invalid == 1
        assert view.staleness_s == 0.0
        assert view.get("acct-3", "bot-4") is view.states[("acct-3", "bot-4")]
        assert view.get("acct-3", "never-seen") is None


def test_a_published_decision_changes_the_running_gateways_verdict(topics: Settings) -> None:
    producer = control_producer(topics)
    with Gateway(topics) as gateway:
        assert gateway.wait_ready(30)
        assert gateway.gate("acct-1", "bot-1", "c1", "text").action == "allow"
        latencies = []
        for version in range(1, 21):
            blocked = version % 2 == 1
            s = state(
                "acct-1",
                "bot-1",
                version,
                blocked_until_ms=LATER if blocked else None,
                block_policy_id="p-hourly" if blocked else None,
            )
            sent = time.perf_counter()
            publish(producer, topics, s, control_key("acct-1", "bot-1"))
            producer.flush(10)
            want = "paused" if blocked else "allow"
            assert wait_for(lambda w=want: gateway.gate("acct-1", "bot-1", "c", "text").action == w)
            latencies.append(time.perf_counter() - sent)
        print(
            f"decision-to-verdict: median {statistics.median(latencies) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms"
        )
        assert gateway.gate("acct-1", "bot-1", "c1", "text").action == "allow"


def test_fallback_once_per_conversation_per_period_and_every_hit_reported(
    topics: Settings,
) -> None:
    producer = control_producer(topics)
    daily = state("acct-2", "bot-1", 1, caps={"text": CapStatus("daily", "2026-09-21", LATER)})
    publish(producer, topics, daily, control_key("acct-2", "bot-1"))
    assert producer.flush(10) == 0
    with Gateway(topics) as gateway:
        assert gateway.wait_ready(30)
        verdicts = [  # distinct instants: an attempt is identified by its millisecond
            gateway.gate("acct-2", "bot-1", f"conv-{c}", "text", NOW + i)
            for i in range(25)
            for c in range(4)
        ]
        fallbacks = [v for v in verdicts if v.action == "fallback"]
        assert len(fallbacks) == 4  # one per conversation
        assert {v.text for v in fallbacks} == {daily.fallback_text_daily}
        assert [v.action for v in verdicts].count("skip") == 96
        # the monthly cap is a new period: the customer hears about it once more
        monthly = state("acct-2", "bot-1", 2, caps={"text": CapStatus("monthly", "2026-09", LATER)})
        publish(producer, topics, monthly, control_key("acct-2", "bot-1"))
        producer.flush(10)
        assert wait_for(lambda: gateway.view.states[("acct-2", "bot-1")].version == 2)
        again = [gateway.gate("acct-2", "bot-1", "conv-0", "text", NOW + 99 + i) for i in range(5)]
        assert [v.action for v in again] == ["fallback"] + ["skip"] * 4
        assert again[0].text == "Back next month!"
        assert gateway.reporter.flush(10) == 0

    hits = []
    consumer = Consumer(
        {
            "bootstrap.servers": topics.bootstrap_servers,
            "group.id": uuid.uuid4().hex,
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    topic = Topics(topics.topic_prefix).caphits
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    eof: set[int] = set()
    deadline = time.monotonic() + 20
    while len(eof) < len(parts) and time.monotonic() < deadline:
        for msg in consumer.consume(500, 0.5):
            if msg.error() is None:
                hits.append(CapHitRecord.from_bytes(msg.value()))
            elif msg.error().code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition())
    consumer.close()
    assert len(hits) == 105  # every capped attempt, so the amber rows count them all
    assert len({h.hit_id for h in hits}) == 105
    assert {(h.period, h.period_key) for h in hits} == {
        ("daily", "2026-09-21"),
        ("monthly", "2026-09"),
    }
