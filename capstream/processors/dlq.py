"""Dead letters of the processors: bad records (or events) to ``<topic>.dlq``, counted.

They travel through the :class:`Outbox` like decisions, so the flusher acks the source record
only once its dead letter is acknowledged by the broker: nothing is committed past a record
that is nowhere.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from capstream.processors.metrics import Metrics
from capstream.processors.outbox import Outbox
from capstream.streams.records import DeadLetterRecord

log = logging.getLogger(__name__)


class DeadLetters:
    """Builds ``DeadLetterRecord``s (raw bytes, reason, source offset) and queues them.

    A dead letter always fits the broker's limit (``DeadLetterRecord.fitted`` cuts the raw
    bytes of a huge record and keeps their size and hash). It is counted in
    ``capstream_processor_dead_letters_total`` when the broker acknowledges it (the drainer
    calls :meth:`acknowledged`), not when it is queued.
    """

    def __init__(self, outbox: Outbox, metrics: Metrics) -> None:
        self.outbox = outbox
        self.metrics = metrics
        self.total = 0
        self.acked = 0

    def send(
        self, topic: str, msg: Any, reason: str, error: str, *, value: bytes | None = None
    ) -> None:
        """Dead-letter ``msg`` (a Faust message: topic, partition, offset, key, value);
        ``value`` replaces the raw value (one refused event of a good record)."""
        raw = value if value is not None else msg.value
        self.send_raw(topic, msg.partition, msg.offset, msg.key, raw, reason, error)

    def send_raw(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        error: str,
    ) -> None:
        record = DeadLetterRecord.fitted(
            source_topic=topic,
            partition=partition,
            offset=offset,
            reason=reason,
            error=error,
            raw_key=key,
            raw_value=value,
            at_ms=time.time_ns() // 1_000_000,
        )
        self.outbox.add_dead_letter(
            topic, partition, record.raw_key or b"", record.to_bytes(), reason
        )
        self.total += 1
        if self.total == 1 or self.total % 1000 == 0:
            log.warning(
                "dead letter %d: %s[%d]@%d %s: %s", self.total, topic, partition, offset, reason,
                error[:200],
            )  # fmt: skip

    def acknowledged(self, label: tuple[str, str], fut: Any) -> None:
        """Count a dead letter the broker acknowledged (a done callback of its send)."""
        if not fut.cancelled() and fut.exception() is None:
            self.acked += 1
            self.metrics.dead_letters.labels(topic=label[0], reason=label[1]).inc()
