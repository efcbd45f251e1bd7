"""``capstream demo``: the local pipeline on the embedded defaults, end to end."""

from __future__ import annotations

import time
import uuid

from rich.console import Console

from capstream.streams.records import UsageBatchRecord, UsageEventRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics


def _ensure_broker(settings: Settings, console: Console) -> None:
    if settings.kafka_bootstrap:
        console.print(f"using the Kafka cluster at {settings.kafka_bootstrap}")
        return
    from capstream.streams.local_kafka import LocalKafka

    broker = LocalKafka(settings.data_dir, settings.kafka_port, settings.kafka_controller_port)
    with console.status("starting Kafka (the first run downloads its jars with mvn)..."):
        seconds = broker.up()
    console.print(f"Kafka {broker.status().version} is up on {broker.bootstrap} ({seconds:.1f}s)")


def run_demo(settings: Settings, *, events: int, console: Console) -> None:
    """Start the broker, create the topics, and send usage events through the usage topic."""
    from confluent_kafka import Consumer, Producer

    _ensure_broker(settings, console)
    created = create_topics(settings)
    console.print(
        f"topics: {sum(v == 'created' for v in created.values())} created, "
        f"{sum(v == 'exists' for v in created.values())} already there"
    )
    topic = Topics(settings.topic_prefix).usage
    conf = settings.librdkafka_config()
    producer = Producer(
        {
            **conf,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
    )
    run = uuid.uuid4().hex[:8]
    per_batch = 50
    start = time.perf_counter()
    now = int(time.time() * 1000)
    for first in range(0, events, per_batch):
        account = f"demo-acct-{(first // per_batch) % 20}"
        batch = UsageBatchRecord(
            batch_id=f"{run}-{first}",
            producer="demo",
            sent_at_ms=now,
            events=[
                UsageEventRecord(
                    event_id=f"{run}-{i}",
                    account_id=account,
                    bot_id=f"bot-{i % 5}",
                    conversation_id=f"conv-{i % 97}",
                    category="text",
                    model="claude-sonnet-4-6",
                    tokens_in=120,
                    tokens_out=80,
                    messages=1,
                    credits_micro=1500,
                    occurred_at_ms=now,
                )
                for i in range(first, min(first + per_batch, events))
            ],
        )
        producer.produce(topic, batch.to_bytes(), key=account.encode())
        producer.poll(0)
    producer.flush(30)
    sent = time.perf_counter() - start

    consumer = Consumer(
        {
            **conf,
            "group.id": f"capstream-demo-{run}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 60
    with console.status("reading the usage topic back..."):
        while seen < events and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            batch = UsageBatchRecord.from_bytes(msg.value())
            seen += sum(1 for e in batch.events if e.event_id.startswith(run))
    consumer.close()
    console.print(f"sent {events:,} usage events in {sent:.2f}s; read back {seen:,} from {topic}")
