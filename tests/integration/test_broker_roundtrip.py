"""Usage batches make a real round trip through the local broker, keyed by account."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from capstream.streams.records import UsageBatchRecord, UsageEventRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics, topic_specs


def _event(i: int, account: str) -> UsageEventRecord:
    return UsageEventRecord(
        event_id=f"e{i}",
        account_id=account,
        bot_id="b1",
        conversation_id="c1",
        category="text",
        model="claude-haiku",
        tokens_in=i,
        tokens_out=1,
        messages=1,
        credits_micro=10 * i,
        occurred_at_ms=1_790_000_000_000 + i,
    )


def test_create_topics_is_idempotent_and_configures_compaction(settings: Settings) -> None:
    first = create_topics(settings)
    assert set(first.values()) == {"created"}
    second = create_topics(settings)
    assert set(second.values()) == {"exists"}
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    md = admin.list_topics(timeout=10)
    t = Topics(settings.topic_prefix)
    assert len(md.topics[t.usage].partitions) == settings.usage_partitions
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, t.control)
    conf = admin.describe_configs([res])[res].result(timeout=10)
    assert conf["cleanup.policy"].value == "compact"
    assert {s.name for s in topic_specs(settings)} <= set(md.topics)


def test_usage_batches_round_trip_and_land_on_the_account_partition(topics: Settings) -> None:
    topic = Topics(topics.topic_prefix).usage
    producer = Producer(
        {
            "bootstrap.servers": topics.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
        }
    )
    sent: dict[str, UsageBatchRecord] = {}
    for n in range(40):
        account = f"acct-{n % 8}"
        batch = UsageBatchRecord(
            batch_id=f"b{n}", sent_at_ms=1, events=[_event(n * 10 + k, account) for k in range(5)]
        )
        sent[batch.batch_id] = batch
        producer.produce(topic, batch.to_bytes(), key=account.encode())
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": topics.bootstrap_servers,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got: dict[str, UsageBatchRecord] = {}
    partition_of: dict[str, set[int]] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        batch = UsageBatchRecord.from_bytes(msg.value())
        got[batch.batch_id] = batch
        partition_of.setdefault(msg.key().decode(), set()).add(msg.partition())
    consumer.close()
    assert got == sent
    # murmur2 on the account id: every record of an account is on one partition
    assert all(len(parts) == 1 for parts in partition_of.values())


def test_create_topics_creates_the_worker_tables_changelogs_compacted(settings: Settings) -> None:
    """Pre-created with the rest: two workers started together on a fresh deployment raced
    to create them, and the loser never read the bots changelog (found by the chaos run)."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    from capstream.streams.topics import create_topics

    outcome = create_topics(settings)
    group = f"{settings.topic_prefix}.processors"
    names = [f"{group}-{t}-changelog" for t in ("accounts", "bots", "feed")]
    assert all(outcome[n] == "created" for n in names)
    admin = AdminClient(settings.librdkafka_config())
    meta = admin.list_topics(timeout=10).topics
    assert all(len(meta[n].partitions) == settings.usage_partitions for n in names)
    res = ConfigResource(ConfigResource.Type.TOPIC, names[1])
    config = admin.describe_configs([res])[res].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"
    # segments roll every minute, so the cleaner compacts all but the last minute of writes
    # and a worker given the partition reads about one record per key
    assert config["segment.ms"].value == "60000"
    assert all(v == "exists" for k, v in create_topics(settings).items() if k in names)
