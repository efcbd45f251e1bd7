"""In-memory stand-ins for the broker side of the sink: a consumer group and a producer."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from capstream.sinks.batches import Batch
from capstream.sinks.dead_letters import DeadLetters
from capstream.sinks.options import SinkOptions
from capstream.sinks.port import MemoryStorage
from capstream.sinks.runner import SinkRunner
from capstream.sinks.tables import sink_tables
from capstream.streams.records import (
    DeadLetterRecord,
    UsageBatchRecord,
    UsageEventRecord,
)

PREFIX = "unit"
TABLES = sink_tables(PREFIX)
USAGE = TABLES[0]
CONTROL = TABLES[1]


def usage_value(n: int, events: int = 3, account: str = "acct-1", **overrides: Any) -> bytes:
    """A UsageBatch record value with ``events`` events, ids derived from ``n``."""
    return UsageBatchRecord(
        batch_id=f"b{n}",
        sent_at_ms=1_790_000_000_000,
        events=[
            UsageEventRecord(
                event_id=f"e{n}-{k}",
                account_id=account,
                bot_id="bot-1",
                conversation_id="conv-1",
                category="text",
                model="claude-haiku",
                tokens_in=k,
                occurred_at_ms=1_790_000_000_000 + n,
                **overrides,
            )
            for k in range(events)
        ],
    ).to_bytes()


@dataclass
class FakeBroker:
    """Partition logs and committed offsets, shared by consumers across 'restarts'."""

    logs: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = field(
        default_factory=dict
    )
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    commit_calls: int = 0

    def append(
        self, topic: str, partition: int, value: bytes | None, key: bytes | None = b"k"
    ) -> int:
        log = self.logs.setdefault((topic, partition), [])
        log.append((key, value))
        return len(log) - 1


class FakeConsumer:
    """Assigns every partition of the broker on the first ``consume``; honours pause."""

    def __init__(self, broker: FakeBroker, *, start_at: dict[tuple[str, int], int] | None = None):
        self.broker = broker
        self.positions: dict[tuple[str, int], int] = {}
        self.paused: set[tuple[str, int]] = set()
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.start_at = start_at
        self.assigned = False
        self.closed = False
        self.pause_calls = 0
        self.resume_calls = 0

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        if not self.assigned:
            self.assigned = True
            tps = [tp for tp in self.broker.logs if tp[0] in self.topics]
            for tp in tps:
                start = self.start_at if self.start_at is not None else self.broker.committed
                self.positions[tp] = start.get(tp, 0)
            self.callbacks["on_assign"](self, [TopicPartition(t, p) for t, p in tps])
        out: list[Any] = []
        for tp in itertools.cycle(sorted(self.positions)):
            if len(out) >= num_messages or not self._readable():
                break
            if tp in self.paused or self.positions[tp] >= len(self.broker.logs[tp]):
                continue
            offset = self.positions[tp]
            key, value = self.broker.logs[tp][offset]
            out.append(
                Message(
                    topic=tp[0],
                    partition=tp[1],
                    offset=offset,
                    key=key,
                    value=value,
                    timestamp=(1, 1_790_000_000_000),
                )
            )
            self.positions[tp] = offset + 1
        return out

    def _readable(self) -> bool:
        return any(
            tp not in self.paused and pos < len(self.broker.logs[tp])
            for tp, pos in self.positions.items()
        )

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.pause_calls += 1
        self.paused.update((p.topic, p.partition) for p in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resume_calls += 1
        self.paused.difference_update((p.topic, p.partition) for p in partitions)

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, self.positions.get((p.topic, p.partition), -1001))
            for p in partitions
        ]

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.closed:
            raise KafkaException(KafkaError(KafkaError._STATE))
        self.broker.commit_calls += 1
        for p in offsets:
            self.broker.committed[(p.topic, p.partition)] = p.offset

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Records produced messages; delivery succeeds unless ``fail`` is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.fail = False
        self._pending: list[tuple[Callable[..., None], tuple[str, bytes, bytes | None]]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        self._pending.append((kw["on_delivery"], (topic, value, key)))

    def poll(self, timeout: float) -> int:
        return self.flush(timeout)

    def flush(self, timeout: float) -> int:
        pending, self._pending = self._pending, []
        for callback, message in pending:
            if self.fail:
                callback(KafkaError(KafkaError._MSG_TIMED_OUT), None)
            else:
                self.sent.append(message)
                callback(None, None)
        return 0

    def dead_letters(self) -> list[DeadLetterRecord]:
        return [DeadLetterRecord.from_bytes(value) for _, value, _ in self.sent]


def make_runner(
    broker: FakeBroker,
    storage: MemoryStorage,
    producer: FakeProducer | None = None,
    *,
    on_written: Callable[[Batch, list[Any]], None] | None = None,
    start_at: dict[tuple[str, int], int] | None = None,
    **options: Any,
) -> tuple[SinkRunner, FakeConsumer]:
    consumer = FakeConsumer(broker, start_at=start_at)
    opts = {"flush_interval_s": 0.01, "retry_initial_s": 0.01, "retry_max_s": 0.05, **options}
    runner = SinkRunner(
        consumer,
        TABLES,
        storage,
        DeadLetters(producer or FakeProducer()),
        SinkOptions(**opts),
        on_written=on_written,
    )
    runner.start()
    return runner, consumer
