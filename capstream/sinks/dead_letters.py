"""Dead letters: records that failed to decode or were refused go to ``<topic>.dlq``, counted.

Reusable by any consumer: build a ``DeadLetters`` around a producer (``dead_letter_producer``
gives the right settings), ``send`` each bad record with its source offset, and call
``flush`` before committing the source offsets: it returns True only once every dead letter
is acknowledged by the broker, so nothing is committed past a record that is nowhere.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Protocol

from capstream.streams.records import DeadLetterRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics


class Producer(Protocol):
    """The part of ``confluent_kafka.Producer`` dead letters need."""

    def produce(self, topic: str, value: bytes, key: bytes | None = ..., **kw: Any) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


def dead_letter_producer(settings: Settings) -> Any:
    """An idempotent, acks=all confluent-kafka producer for dead letters."""
    from confluent_kafka import Producer as KafkaProducer

    return KafkaProducer(
        {
            **settings.librdkafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "log_level": 3,
        }
    )


def dead_letter(
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    *,
    reason: str,
    error: str,
    at_ms: int | None = None,
) -> DeadLetterRecord:
    """The ``DeadLetterRecord`` of one bad record: raw bytes, why, and where it came from
    (cut to fit the broker's record limit, with the original size and hash, if larger)."""
    return DeadLetterRecord.fitted(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        reason=reason,
        error=error,
        raw_key=key,
        raw_value=value,
        at_ms=int(time.time() * 1000) if at_ms is None else at_ms,
    )


class DeadLetters:
    """Sends dead letters and keeps them until the broker has them; counts per reason."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._lock = threading.Lock()
        self._unacked: dict[int, tuple[str, bytes, bytes | None]] = {}
        self._failed: list[int] = []
        self._next = 0
        self.counts: Counter[tuple[str, str]] = Counter()
        self.delivery_errors = 0

    def send(
        self,
        source_topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        *,
        reason: str,
        error: str,
    ) -> DeadLetterRecord:
        """Queue one dead letter to ``<source_topic>.dlq`` (asynchronous; see ``flush``)."""
        record = dead_letter(
            source_topic, partition, offset, key, value, reason=reason, error=error
        )
        with self._lock:
            ident = self._next
            self._next += 1
            self._unacked[ident] = (Topics.dlq(source_topic), record.to_bytes(), record.raw_key)
            self.counts[(source_topic, reason)] += 1
        self._produce(ident)
        return record

    def _produce(self, ident: int) -> None:
        topic, data, key = self._unacked[ident]

        def delivered(err: Any, _msg: Any) -> None:
            with self._lock:
                if err is None:
                    self._unacked.pop(ident, None)
                else:
                    self.delivery_errors += 1
                    self._failed.append(ident)

        try:
            self._producer.produce(topic, data, key, on_delivery=delivered)
        except BufferError:
            self._producer.poll(0.5)
            with self._lock:
                self._failed.append(ident)
        self._producer.poll(0)

    @property
    def pending(self) -> int:
        """Dead letters not yet acknowledged by the broker."""
        with self._lock:
            return len(self._unacked)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait for every dead letter, re-sending failed ones; True once none is pending."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                retry, self._failed = self._failed, []
            for ident in retry:
                self._produce(ident)
            self._producer.flush(max(0.0, min(1.0, deadline - time.monotonic())))
            if not self.pending:
                return True
            if time.monotonic() >= deadline:
                return False

    @property
    def total(self) -> int:
        return sum(self.counts.values())
