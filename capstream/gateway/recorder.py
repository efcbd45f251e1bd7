"""``UsageRecorder``: record usage without blocking; a thread coalesces it per partition."""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, NamedTuple

from confluent_kafka import KafkaException, Producer

from capstream.core.models import UsageEvent
from capstream.gateway.errors import (
    GatewayError,
    NotDeliveredError,
    QueueFullError,
    RecorderClosedError,
)
from capstream.gateway.partitioner import partition_for
from capstream.gateway.wire import encode_batch, encode_event
from capstream.streams.records import UsageEventRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
Overflow = Literal["drop", "raise"]
_METADATA_REFRESH_S = 60.0
_MAX_DRAIN = 50_000
_PARTITION_CACHE = 100_000


class RecorderStats(NamedTuple):
    """Counters of a :class:`UsageRecorder` (events unless named otherwise)."""

    accepted: int
    """taken by ``record()``: each is delivered or, at ``close()``, reported as pending"""
    rejected: int
    """refused by ``record()`` because the queue was full (the overflow policy)"""
    queued: int
    """accepted, waiting for the background thread"""
    in_flight: int
    """handed to Kafka, not yet acknowledged by every in-sync replica"""
    delivered: int
    """acknowledged by Kafka (acks=all)"""
    batches: int
    """``UsageBatch`` records produced"""
    retried: int
    """batches produced again after a delivery error"""


class _Marker:
    """A flush (or close) request travelling through the queue behind the events it covers."""

    __slots__ = ("close", "deadline", "done")

    def __init__(self, timeout: float, done: Callable[[int], None], close: bool) -> None:
        self.deadline = time.monotonic() + timeout
        self.done = done
        self.close = close


class UsageRecorder:
    """Publish usage events to the usage topic without ever blocking the caller.

    ``record()`` validates the event, encodes it and appends it to a bounded in-memory queue.
    A background thread waits ``linger_ms`` for more, groups the queued events by the
    partition Kafka's default partitioner gives their ``account_id`` (murmur2), and produces
    one ``UsageBatch`` record per partition (at most ``max_batch_events`` events each) with
    an idempotent producer (``acks=all``). Records are keyed by the first event's account, so
    any other Kafka client reading the key lands on the same partition.

    Overflow: when ``max_queue`` events are waiting (the brokers are down or slower than the
    callers, and librdkafka's own 64 MB buffer is full), ``record()`` refuses the new event,
    counts it in ``stats.rejected`` and returns False (``on_overflow="drop"``, the default: a
    reply must never wait on accounting) or raises :class:`QueueFullError`
    (``on_overflow="raise"``). Accepted events are never dropped: a failed delivery is
    produced again, and ``flush()`` / ``close()`` wait for every accepted event to be
    acknowledged.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        linger_ms: float = 5.0,
        max_queue: int = 200_000,
        on_overflow: Overflow = "drop",
        max_batch_events: int = 500,
        producer_name: str = "",
        topic: str | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if linger_ms < 0 or max_queue < 1 or max_batch_events < 1:
            raise GatewayError("linger_ms must be >= 0, max_queue and max_batch_events >= 1")
        if on_overflow not in ("drop", "raise"):
            raise GatewayError(f"on_overflow must be 'drop' or 'raise', not {on_overflow!r}")
        self.topic = topic or Topics(settings.topic_prefix).usage
        self.linger_s = linger_ms / 1000
        self.max_queue = max_queue
        self.on_overflow = on_overflow
        self.max_batch_events = max_batch_events
        self.producer_name = producer_name
        self._config: dict[str, Any] = {
            **settings.librdkafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 2,
            "compression.type": "lz4",
            # Bounds what waits inside librdkafka while the brokers are away (default 1 GB).
            "queue.buffering.max.kbytes": 65_536,
            "allow.auto.create.topics": False,
            "log_level": 3,
            "logger": logging.getLogger("capstream.gateway.librdkafka"),
            **(producer_config or {}),
        }
        self._producer = Producer(self._config)
        # (account_id, encoded event) or (None, _Marker): markers ride behind the events
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wake = threading.Event()
        self._idle = False
        self._closed = False
        self._lock = threading.Lock()
        self._rejected = 0
        self._drained = 0
        self._markers = 0
        self._in_flight = 0
        self._delivered = 0
        self._batches = 0
        self._retried = 0
        self._retry: list[tuple[int, bytes | None, bytes, int]] = []
        self._fatal = False
        self._partitions = 0
        self._partition_of: dict[str, int] = {}
        self._checked_at = 0.0
        self._warned_at = -1e9
        self._batch_prefix = uuid.uuid4().hex[:16]
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="usage-recorder", daemon=True)
        self._thread.start()

    # -- the caller's side -----------------------------------------------------------------

    def record(
        self,
        event: UsageEvent | UsageEventRecord | None = None,
        /,
        *,
        event_id: str | None = None,
        account_id: str | None = None,
        bot_id: str | None = None,
        conversation_id: str | None = None,
        category: str | None = None,
        model: str | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        messages: int = 0,
        conversation_started: bool = False,
        credits_micro: int = 0,
        occurred_at_ms: int | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> bool:
        """Queue one usage event; True if accepted. Never blocks.

        Pass a :class:`~capstream.core.models.UsageEvent` (or ``UsageEventRecord``) or the
        fields by name. ``occurred_at_ms`` defaults to now. Raises
        :class:`~capstream.gateway.errors.UsageEventError` naming a bad field.
        """
        if event is not None:
            return self.record(
                event_id=event.event_id,
                account_id=event.account_id,
                bot_id=event.bot_id,
                conversation_id=event.conversation_id,
                category=event.category,
                model=event.model,
                tokens_in=event.tokens_in,
                tokens_out=event.tokens_out,
                messages=event.messages,
                conversation_started=event.conversation_started,
                credits_micro=event.credits_micro,
                occurred_at_ms=event.occurred_at_ms,
                attributes=event.attributes,
            )
        body = encode_event(
            event_id,
            account_id,
            bot_id,
            conversation_id,
            category,
            model,
            tokens_in,
            tokens_out,
            messages,
            conversation_started,
            credits_micro,
            occurred_at_ms,
            attributes,
        )
        queue = self._queue
        if len(queue) >= self.max_queue or self._closed:
            return self._refuse()
        queue.append((account_id, body))  # type: ignore[arg-type]  # validated above
        if self._idle:
            self._wake.set()
        return True

    def _refuse(self) -> bool:
        if self._closed:
            raise RecorderClosedError("this UsageRecorder is closed; create a new one to record")
        with self._lock:
            self._rejected += 1
            rejected = self._rejected
        if rejected == 1 or rejected % 10_000 == 0:
            log.warning(
                "usage queue full (%d events waiting for Kafka): %d events refused so far",
                len(self._queue),
                rejected,
            )
        if self.on_overflow == "raise":
            raise QueueFullError(
                f"{len(self._queue)} usage events are waiting for Kafka (max_queue="
                f"{self.max_queue}); this event was not recorded. Check the brokers, retry "
                "later, or raise max_queue."
            )
        return False

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until Kafka acknowledged every event accepted so far; return how many are not.

        0 means everything recorded before this call is durably in the usage topic.
        """
        if self._closed:
            raise RecorderClosedError("this UsageRecorder is closed")
        return self._wait(timeout, close=False)

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then stop the background thread. Raises :class:`NotDeliveredError` if the
        brokers did not acknowledge every accepted event within ``timeout`` (the thread keeps
        trying; call ``close()`` again)."""
        if not self._thread.is_alive():
            return
        self._closed = True
        pending = self._wait(timeout, close=True)
        if pending:
            raise NotDeliveredError(pending, timeout)
        self._thread.join(timeout=5)

    def _wait(self, timeout: float, *, close: bool) -> int:
        result: list[int] = []
        finished = threading.Event()

        def done(pending: int) -> None:
            result.append(pending)
            finished.set()

        self.enqueue_marker(timeout, done, close=close)
        # The thread answers by the deadline unless a broker call holds it a little longer.
        if not finished.wait(timeout + 1):
            return self.stats.queued + self.stats.in_flight
        return result[0]

    def enqueue_marker(self, timeout: float, done: Callable[[int], None], *, close: bool) -> None:
        """Ask the thread to call ``done(pending)`` once everything queued before is acked
        (``pending == 0``) or ``timeout`` passed. Used by ``flush``/``close`` and the asyncio
        wrapper."""
        with self._lock:
            self._markers += 1
        self._queue.append((None, _Marker(timeout, done, close)))  # type: ignore[arg-type]
        self._wake.set()

    @property
    def stats(self) -> RecorderStats:
        """A snapshot of the counters."""
        queued = max(0, len(self._queue) - self._markers)
        return RecorderStats(
            accepted=self._drained + queued,
            rejected=self._rejected,
            queued=queued,
            in_flight=self._in_flight,
            delivered=self._delivered,
            batches=self._batches,
            retried=self._retried,
        )

    def __enter__(self) -> UsageRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the background thread -------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            try:
                if not queue:
                    self._idle = True
                    if not queue:
                        self._wake.wait(0.1)
                    self._idle = False
                    self._wake.clear()
                    self._service(0)
                    continue
                if self.linger_s and len(queue) < self.max_batch_events and not self._markers:
                    self._wake.wait(self.linger_s)
                    self._wake.clear()
                if not self._ensure_partitions():
                    self._wake.wait(1.0)
                    continue
                marker = self._drain()
                self._service(0)
                if marker is not None and self._complete(marker):
                    return
            except Exception:  # the thread must outlive any surprise; nothing is dropped
                log.exception("usage recorder: unexpected error; retrying in 1s")
                time.sleep(1.0)

    def _drain(self) -> _Marker | None:
        """Produce up to ``_MAX_DRAIN`` queued events; stop at (and return) a marker."""
        popleft = self._queue.popleft
        partition_of = self._partition_of
        groups: list[list[tuple[str, bytes]]] = [[] for _ in range(self._partitions)]
        marker: _Marker | None = None
        taken = 0
        for _ in range(min(len(self._queue), _MAX_DRAIN)):
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
                value = encode_batch(
                    f"{self._batch_prefix}-{self._seq}", self.producer_name, sent_at, bodies
                )
                self._produce(p, chunk[0][0].encode(), value, len(bodies))
        self._drained += taken
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
                self._batches += 1
                return
        self._in_flight += events
        self._batches += 1

    def _on_delivery(self, events: int, err: Any, msg: Any) -> None:
        if err is None:
            self._in_flight -= events
            self._delivered += events
            return
        if err.fatal():
            self._fatal = True
        log.warning("usage batch not delivered (%s); producing it again", err.str())
        self._in_flight -= events
        self._retry.append((msg.partition(), msg.key(), msg.value(), events))

    def _service(self, timeout: float) -> None:
        """Serve delivery reports and produce failed batches again."""
        self._producer.poll(timeout)
        if self._fatal:
            self._replace_producer()
        retry, self._retry = self._retry, []
        for partition, key, value, events in retry:
            self._retried += 1
            self._batches -= 1
            self._produce(partition, key, value, events)

    def _replace_producer(self) -> None:
        """An idempotent producer's fatal error ends it: collect its batches, start anew."""
        log.error("usage producer hit a fatal error; starting a new producer")
        old = self._producer
        old.purge()
        old.flush(5)  # delivers the purge reports: every batch lands in self._retry
        self._producer = Producer(self._config)
        self._fatal = False

    def _complete(self, marker: _Marker) -> bool:
        """Wait for acks of everything produced so far; True when the thread should stop."""
        with self._lock:
            self._markers -= 1
        while True:
            self._service(0)
            pending = self._in_flight + sum(r[3] for r in self._retry)
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
                log.error("usage recorder: %s; %d events wait", problem, len(self._queue))
            return bool(self._partitions)
        count = len(topic.partitions)
        if count != self._partitions:
            self._partitions = count
            self._partition_of.clear()
        self._checked_at = now
        return True
