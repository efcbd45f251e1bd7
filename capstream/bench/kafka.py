"""Broker plumbing of the suite: the cluster, deployments, catalog writes, topic reads."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka import admin as kafka_admin

from capstream.errors import CapstreamError
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics

Record = tuple[int, bytes | None, bytes | None]
"""(offset, key, value) of one Kafka record."""


class BenchKafkaError(CapstreamError):
    """The benchmark could not read or write the broker."""


@contextlib.contextmanager
def cluster(settings: Settings, work: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, description): ``CAPSTREAM_KAFKA_BOOTSTRAP`` if set, else a local broker
    on free ports under ``work`` (stopped on exit, whatever happens)."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap, f"external cluster {settings.kafka_bootstrap}"
        return
    from capstream.streams.local_kafka import LocalKafka, free_port, kafka_version

    broker = LocalKafka(work / "kafka", free_port(), free_port())
    broker.up(timeout=180)
    try:
        yield broker.bootstrap, f"local Kafka {kafka_version()} (KRaft, one node)"
    finally:
        broker.down()


def deployment(base: Settings, bootstrap: str, data_dir: Path, partitions: int) -> Settings:
    """Settings of a fresh deployment (its own topic prefix) with every topic created."""
    settings = base.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "topic_prefix": f"bench{uuid.uuid4().hex[:8]}",
            "data_dir": data_dir,
            "usage_partitions": partitions,
            "control_partitions": partitions,
        }
    )
    create_topics(settings)
    return settings


def create_topic(settings: Settings, name: str, partitions: int) -> None:
    """Create one plain topic (the peers' decisions, the produce test's target).

    Time retention is off: a peer may stamp its decisions with event time (Quix stamps a
    window's result with the window's start), and the backlog's event time is months in the
    past, so the broker's 7-day retention would delete them before they are read back.
    """
    admin = kafka_admin.AdminClient({**settings.librdkafka_config(), "log_level": 0})
    topic = kafka_admin.NewTopic(  # type: ignore[attr-defined]
        name, partitions, settings.replication_factor, config={"retention.ms": "-1"}
    )
    fut = admin.create_topics([topic])[name]
    try:
        fut.result(timeout=30)
    except Exception as exc:
        raise BenchKafkaError(f"could not create topic {name}: {exc}") from exc


def write_catalog(
    settings: Settings,
    tenants: Sequence[TenantSettingsRecord],
    policies: Sequence[PolicyRecord],
) -> None:
    """Produce tenant settings and policies to their compacted topics and wait for acks."""
    topics = Topics(settings.topic_prefix)
    p = Producer({**settings.librdkafka_config(), "linger.ms": 20, "acks": "all"})
    for t in tenants:
        p.produce(topics.tenants, t.to_bytes(), t.account_id.encode())
        p.poll(0)
    for pol in policies:
        p.produce(topics.policies, pol.to_bytes(), f"{pol.account_id}/{pol.policy_id}".encode())
        p.poll(0)
    if p.flush(60) != 0:
        raise BenchKafkaError("the catalog (tenants, policies) was not acknowledged in 60 s")


def read_all(settings: Settings, topic: str, timeout: float = 30.0) -> list[list[Record]]:
    """Every record of ``topic`` per partition, in order: (offset, key, value)."""
    c = Consumer({**settings.librdkafka_config(), "group.id": uuid.uuid4().hex,
                  "enable.partition.eof": True, "enable.auto.commit": False,
                  "fetch.max.bytes": 64 << 20, "log_level": 0})  # fmt: skip
    try:
        meta = c.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise BenchKafkaError(f"cannot read {topic}: {meta.error}")
        parts = sorted(meta.partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[list[Record]] = [[] for _ in parts]
        eof: set[int] = set()
        idle_since = time.monotonic()
        while len(eof) < len(parts):
            msgs = c.consume(10_000, 0.5)
            if not msgs:
                if time.monotonic() - idle_since > timeout:
                    raise BenchKafkaError(f"reading {topic} stalled for {timeout:.0f} s")
                continue
            idle_since = time.monotonic()
            for m in msgs:
                # Both are set on every consumed message (None only for produced ones).
                p, offset = cast(int, m.partition()), cast(int, m.offset())
                if m.error() is not None:
                    eof.add(p)
                    continue
                out[p].append((offset, m.key(), m.value()))
        return out
    finally:
        c.close()


def end_offsets(settings: Settings, topic: str, partitions: int) -> list[int]:
    """The high watermark of every partition."""
    c = Consumer({**settings.librdkafka_config(), "group.id": uuid.uuid4().hex, "log_level": 0})
    try:
        return [
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
    finally:
        c.close()


def committed(settings: Settings, group: str, topic: str, partitions: int) -> list[int]:
    """The committed offset of ``group`` on every partition (0 where nothing is committed)."""
    c = Consumer({**settings.librdkafka_config(), "group.id": group, "log_level": 0})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [max(tp.offset, 0) for tp in sorted(tps, key=lambda tp: tp.partition)]
    finally:
        c.close()
