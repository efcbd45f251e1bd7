"""``CapHitReporter``: tell the processors about capped AI attempts, never blocking a reply."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

from confluent_kafka import Producer

from capstream.core.models import CapHit
from capstream.streams.caphit_wire import encode_cap_hit
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)


class ReporterStats(NamedTuple):
    """Counters of a :class:`CapHitReporter`."""

    reported: int
    delivered: int
    dropped: int
    """refused because librdkafka's local queue was full (brokers away for long)"""
    retried: int


class CapHitReporter:
    """Produce each :class:`CapHit` to the caphits topic (keyed by account, Avro ``CapHit``).

    ``report()`` hands the record to librdkafka and returns at once; a thread serves the
    delivery reports and produces failed records again. The processors count the attempts
    on the conversation's amber feed row (each ``hit_id`` once).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = topic or Topics(settings.topic_prefix).caphits
        self._producer = Producer(
            {
                **settings.librdkafka_config(),
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": "murmur2_random",
                "linger.ms": 5,
                "allow.auto.create.topics": False,
                "log_level": 3,
                "logger": logging.getLogger("capstream.gateway.librdkafka"),
                **(producer_config or {}),
            }
        )
        self._lock = threading.Lock()
        self._reported = self._delivered = self._dropped = self._retried = 0
        self._retry: list[tuple[bytes, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="caphit-reporter", daemon=True)
        self._thread.start()

    def report(self, hit: CapHit) -> bool:
        """Queue one cap hit for the caphits topic; False (and counted) if it was dropped."""
        value = encode_cap_hit(hit)
        try:
            self._producer.produce(
                self.topic, value, hit.account_id.encode(), on_delivery=self._on_delivery
            )
        except BufferError:
            with self._lock:
                self._dropped += 1
            log.warning("caphits queue full: a cap hit of %s was dropped", hit.account_id)
            return False
        with self._lock:
            self._reported += 1
        return True

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self._delivered += 1
        else:
            log.warning("cap hit not delivered (%s); producing it again", err.str())
            self._retry.append((msg.key(), msg.value()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.2)
            retry, self._retry = self._retry, []
            for key, value in retry:
                self._retried += 1
                try:
                    self._producer.produce(self.topic, value, key, on_delivery=self._on_delivery)
                except BufferError:
                    self._retry.append((key, value))

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for the records handed over so far; returns how many are still unconfirmed."""
        return int(self._producer.flush(timeout)) + len(self._retry)

    def close(self, timeout: float = 10.0) -> int:
        """Flush and stop; returns how many cap hits were not confirmed."""
        left = self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout=5)
        return left

    @property
    def stats(self) -> ReporterStats:
        return ReporterStats(self._reported, self._delivered, self._dropped, self._retried)
