"""The recorder's background thread: queued events -> one ``UsageBatch`` per partition."""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer

from capstream.gateway.wire import encode_batch_texts
from capstream.streams.partitioner import partition_for

log = logging.getLogger("capstream.gateway.recorder")
_METADATA_REFRESH_S = 60.0
_MAX_DRAIN = 50_000
_PARTITION_CACHE = 100_000


class Marker:
    """A flush (or close) request travelling through the queue behind the events it covers."""

    __slots__ = ("close", "deadline", "done")

    def __init__(self, timeout: float, done: Callable[[int], None], close: bool) -> None:
        self.deadline = time.monotonic() + timeout
        self.done = done
        self.close = close


class BatchSender:
    """Drains the recorder's queue: linger, group by murmur2 partition, produce, retry.

    Only its own thread touches the producer, so delivery reports and counters need no
    lock. ``queue`` holds ``(account_id, event_text(...))`` or ``(None, Marker)``; a marker
    is answered once everything queued before it is acknowledged (or its deadline passed).
    """

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        *,
        producer_name: str,
        linger_s: float,
        max_batch_events: int,
    ) -> None:
        self.topic = topic
        self.producer_name = producer_name
        self.linger_s = linger_s
        self.max_batch_events = max_batch_events
        self.queue: deque[tuple[str, str]] = deque()
        self.wake = threading.Event()
        self.idle = False
        """True while the thread sleeps on an empty queue: ``record()`` then wakes it."""
        self.lock = threading.Lock()
        self.markers = 0
        self.drained = self.in_flight = self.delivered = self.batches = self.retried = 0
        self._config = config
        self._producer = Producer(config)
        self._retry: list[tuple[int, bytes | None, bytes, int]] = []
        self._fatal = False
        self._partitions = 0
        self._partition_of: dict[str, int] = {}
        self._checked_at = 0.0
        self._warned_at = -1e9
        self._batch_prefix = uuid.uuid4().hex[:16]
        self._seq = 0
        self.thread = threading.Thread(target=self._run, name="usage-recorder", daemon=True)
        self.thread.start()

    def add_marker(self, timeout: float, done: Callable[[int], None], *, close: bool) -> None:
        with self.lock:
            self.markers += 1
        self.queue.append((None, Marker(timeout, done, close)))  # type: ignore[arg-type]
        self.wake.set()

    def _run(self) -> None:
        queue = self.queue
        while True:
            try:
                if not queue:
                    self.idle = True
                    if not queue:
                        self.wake.wait(0.1)
                    self.idle = False
                    self.wake.clear()
                    self._service(0)
                    continue
                if self.linger_s and len(queue) < self.max_batch_events and not self.markers:
                    self.wake.wait(self.linger_s)
                    self.wake.clear()
                if not self._ensure_partitions():
                    self.wake.wait(1.0)
                    continue
                marker = self._drain()
                self._service(0)
                if marker is not None and self._complete(marker):
                    return
            except Exception:  # the thread must outlive any surprise; nothing is dropped
                log.exception("usage recorder: unexpected error; retrying in 1s")
                time.sleep(1.0)

    def _drain(self) -> Marker | None:
        """Produce up to ``_MAX_DRAIN`` queued events; stop at (and return) a marker."""
        popleft = self.queue.popleft
        partition_of = self._partition_of
        groups: list[list[tuple[str, str]]] = [[] for _ in range(self._partitions)]
        marker: Marker | None = None
        taken = 0
        for _ in range(min(len(self.queue), _MAX_DRAIN)):
            item = popleft()
            p = partition_of.get(item[0])
            if p is None:
                if item[0] is None:  # a flush marker: (None, marker)
                    marker = item[1]
                    break
                if len(partition_of) >= _PARTITION_CACHE:
                    partition_of.clear()
                account = item[0]
                p = partition_of[account] = partition_for(account.encode(), self._partitions)
            groups[p].append(item)
            taken += 1
        sent_at = time.time_ns() // 1_000_000
        size = self.max_batch_events
        for p, group in enumerate(groups):
            if not group:
                continue
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                bodies = [body for _, body in chunk]
                self._seq += 1
                value = encode_batch_texts(
                    f"{self._batch_prefix}-{self._seq}", self.producer_name, sent_at, bodies
                )
                self._produce(p, chunk[0][0].encode(), value, len(bodies))
        self.drained += taken
        return marker

    def _produce(self, partition: int, key: bytes | None, value: bytes, events: int) -> None:
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value,
                    key,
                    partition=partition,
                    on_delivery=functools.partial(self._on_delivery, events),
                )
                break
            except BufferError:  # librdkafka's own queue is full: let it drain
                self._producer.poll(0.05)
            except KafkaException as exc:  # keep the batch; the next service round retries
                error = exc.args[0]
                if error.fatal():
                    self._fatal = True
                log.warning("usage batch not produced (%s); will retry", error.str())
                self._retry.append((partition, key, value, events))
                self.batches += 1
                return
        self.in_flight += events
        self.batches += 1

    def _on_delivery(self, events: int, err: Any, msg: Any) -> None:
        if err is None:
            self.in_flight -= events
            self.delivered += events
            return
        if err.fatal():
            self._fatal = True
        log.warning("usage batch not delivered (%s); producing it again", err.str())
        self.in_flight -= events
        self._retry.append((msg.partition(), msg.key(), msg.value(), events))

    def _service(self, timeout: float) -> None:
        """Serve delivery reports and produce failed batches again."""
        self._producer.poll(timeout)
        if self._fatal:
            self._replace_producer()
        retry, self._retry = self._retry, []
        for partition, key, value, events in retry:
            self.retried += 1
            self.batches -= 1
            self._produce(partition, key, value, events)

    def _replace_producer(self) -> None:
        """An idempotent producer's fatal error ends it: collect its batches, start anew."""
        log.error("usage producer hit a fatal error; starting a new producer")
        old = self._producer
        old.purge()
        old.flush(5)  # delivers the purge reports: every batch lands in self._retry
        self._producer = Producer(self._config)
        self._fatal = False

    def _complete(self, marker: Marker) -> bool:
        """Wait for acks of everything produced so far; True when the thread should stop."""
        with self.lock:
            self.markers -= 1
        while True:
            self._service(0)
            pending = self.in_flight + sum(r[3] for r in self._retry)
            remaining = marker.deadline - time.monotonic()
            if pending == 0 or remaining <= 0:
                break
            self._producer.flush(min(remaining, 0.2))
        marker.done(pending)
        return marker.close and pending == 0

    def _ensure_partitions(self) -> bool:
        """Know the usage topic's partition count (refreshed every minute)."""
        now = time.monotonic()
        if self._partitions and now - self._checked_at < _METADATA_REFRESH_S:
            return True
        problem = None
        try:
            topic = self._producer.list_topics(self.topic, timeout=5).topics.get(self.topic)
        except Exception as exc:  # KafkaException: the brokers are unreachable
            problem = f"cannot reach Kafka ({exc})"
        else:
            if topic is None or topic.error is not None or not topic.partitions:
                problem = f"topic {self.topic} is missing: run `capstream topics create`"
        if problem is not None:
            if self._partitions:  # keep the count we know; look again in a minute
                self._checked_at = now
            if now - self._warned_at > 30:
                self._warned_at = now
                log.error("usage recorder: %s; %d events wait", problem, len(self.queue))
            return bool(self._partitions)
        count = len(topic.partitions)
        if count != self._partitions:
            self._partitions = count
            self._partition_of.clear()
        self._checked_at = now
        return True
