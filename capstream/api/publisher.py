"""Publishes records to Kafka (acks=all, idempotent) and says where each one landed."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from capstream.api.errors import UnavailableError
from capstream.streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Written:
    """Where a record landed: the read view has seen it once it is past ``offset``."""

    topic: str
    partition: int
    offset: int


class Publisher:
    """A confluent-kafka producer for low-rate writes; ``publish`` waits for the broker's ack."""

    def __init__(self, settings: Settings, timeout_s: float = 15.0) -> None:
        from confluent_kafka import Producer

        self._timeout_s = timeout_s
        self._producer: Any = Producer(
            {
                **settings.librdkafka_config(),
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "message.timeout.ms": int(timeout_s * 1000),
                "log_level": 3,
            }
        )
        self._lock = threading.Lock()

    async def publish(self, topic: str, key: str, value: bytes | None) -> Written:
        """Send one record (``None`` = tombstone) and return where it landed once acked."""
        return await asyncio.to_thread(self.publish_sync, topic, key, value)

    def publish_sync(self, topic: str, key: str, value: bytes | None) -> Written:
        """Blocking form of :meth:`publish`."""
        result: dict[str, Any] = {}

        def on_delivery(err: Any, msg: Any) -> None:
            result["err"] = err
            result["msg"] = msg

        with self._lock:
            self._producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
            self._producer.flush(self._timeout_s)
        err = result.get("err")
        msg = result.get("msg")
        if err is not None or msg is None:
            reason = err.str() if err is not None else "no acknowledgement in time"
            raise UnavailableError(f"could not write to Kafka topic {topic}: {reason}; retry later")
        return Written(topic, int(msg.partition()), int(msg.offset()))

    def close(self) -> None:
        with self._lock:
            self._producer.flush(self._timeout_s)
