"""``CompactedReader``: every record of compacted topics, from the beginning, on a thread.

The gateway's control view and shared ledger and the API's view of policies, tenants and
channels read their topics the same way: every partition assigned (no consumer group,
nothing committed), read from the beginning; :attr:`~CompactedReader.ready` once each
partition has been read up to the end offset it had when it was assigned; new partitions
picked up (metadata checked every ``metadata_refresh_s``); reading on after that; and
:attr:`~CompactedReader.staleness_s`: 0 while every partition's leader is up and read to
its high offset (librdkafka's statistics), else the seconds since it last was.
librdkafka reconnects by itself after a broker restart.

The consumer is injectable (``consumer=``: any factory taking the librdkafka config, e.g.
a fake in tests). Records are handed to ``on_record`` on the reader's thread, holding
:attr:`~CompactedReader.progress` (a ``threading.Condition``, notified after each batch),
which readers of the applied data may take too; :meth:`~CompactedReader.wait_for` waits
until a given offset has been applied.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

log = logging.getLogger(__name__)
ConsumerFactory = Callable[[dict[str, Any]], Any]
_DOWN = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT})
_UNKNOWN_END = 1 << 62
"""The end offset of a partition whose watermarks could not be read: its EOF tells."""


class CompactedReader:
    """Reads ``topics`` from the beginning in a background thread (see the module doc).

    ``config``: librdkafka settings (bootstrap, security, ``group.id``: required by
    librdkafka, never joined); the reader adds what it needs (no commits, EOF events,
    statistics each second). ``on_record(msg)`` gets every record, tombstones included;
    ``on_step()`` runs after each poll (with or without records); ``on_ready()`` once.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        on_record: Callable[[Any], None],
        *,
        name: str,
        on_step: Callable[[], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        consumer: ConsumerFactory = Consumer,
        metadata_refresh_s: float = 30.0,
    ) -> None:
        self.topics = tuple(topics)
        self.name = name
        self.on_record = on_record
        self.on_step = on_step
        self.on_ready = on_ready
        self.metadata_refresh_s = metadata_refresh_s
        self.problem: str | None = None
        """Why the partitions cannot be listed (brokers unreachable, a topic missing), if so."""
        self.progress = threading.Condition()
        self.applied: dict[tuple[str, int], int] = {}
        """(topic, partition) -> the next offset to apply (under :attr:`progress`)."""
        self._config: dict[str, Any] = {
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "statistics.interval.ms": 1000,
            **config,
            "stats_cb": self._on_stats,
            "error_cb": self._on_error,
        }
        self._make_consumer = consumer
        self._consumer: Any = None
        self._targets: dict[tuple[str, int], int] = {}
        self._caught_up: set[tuple[str, int]] = set()
        self._ready = threading.Event()
        self._current = False
        self._current_at = time.monotonic()
        self._stop = threading.Event()
        self._checked_at = -1e9
        self._warned_at = -1e9
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> CompactedReader:
        self._thread.start()
        return self

    # -- state -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every partition has been read up to its end offset at assignment."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """Block until :attr:`ready` (or ``timeout``); returns :attr:`ready`."""
        return self._ready.wait(timeout)

    @property
    def staleness_s(self) -> float:
        """0.0 while connected and caught up; else seconds since the reader last was."""
        if self._current:
            return 0.0
        return time.monotonic() - self._current_at

    def wait_for(self, topic: str, partition: int, offset: int, timeout: float) -> bool:
        """Block until the record at ``offset`` has been applied; False after ``timeout``."""
        with self.progress:
            return self.progress.wait_for(
                lambda: self.applied.get((topic, partition), 0) > offset, timeout
            )

    def close(self) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        self._consumer = self._make_consumer(self._config)
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:  # keep serving what was read; try again shortly
                    log.exception("%s: unexpected error; retrying in 1s", self.name)
                    self._stop.wait(1.0)
        finally:
            self._consumer.close()

    def _step(self) -> None:
        if time.monotonic() - self._checked_at > self.metadata_refresh_s:
            self._assign_new_partitions()
        if not self._targets:
            self._stop.wait(0.5)
            self._stepped()
            return
        # poll() returns on the first record (consume() would wait out its timeout), then
        # consume(0) takes whatever else has arrived.
        first = self._consumer.poll(0.1)
        if first is None:
            self._stepped()
            return
        reached: list[tuple[str, int]] = []
        with self.progress:
            for msg in [first, *self._consumer.consume(1000, 0)]:
                err = msg.error()
                tp = (msg.topic(), msg.partition())
                if err is None:
                    self.on_record(msg)
                    self.applied[tp] = msg.offset() + 1
                    if msg.offset() + 1 >= self._targets.get(tp, 0):
                        reached.append(tp)
                elif err.code() == KafkaError._PARTITION_EOF:
                    self.applied[tp] = max(self.applied.get(tp, 0), msg.offset())
                    reached.append(tp)
                else:
                    log.warning("%s: %s", self.name, err.str())
            self.progress.notify_all()
        for tp in reached:
            self._reached(tp)
        self._stepped()

    def _stepped(self) -> None:
        if self.on_step is not None:
            self.on_step()

    def _partitions(self) -> list[tuple[str, int]] | None:
        """Every partition of the topics, or None (and :attr:`problem` says why)."""
        found: list[tuple[str, int]] = []
        for topic in self.topics:
            try:
                meta = self._consumer.list_topics(topic, timeout=2).topics.get(topic)
            except Exception as exc:  # KafkaException: brokers unreachable
                self.problem = f"cannot reach Kafka ({exc})"
                return None
            if meta is None or meta.error is not None or not meta.partitions:
                self.problem = f"topic {topic} does not exist; run `capstream topics create`"
                return None
            found += [(topic, p) for p in meta.partitions]
        self.problem = None
        return found

    def _assign_new_partitions(self) -> None:
        partitions = self._partitions()
        now = time.monotonic()
        if partitions is None:
            if now - self._warned_at > 30:
                self._warned_at = now
                log.error("%s: %s", self.name, self.problem)
            self._stop.wait(1.0)
            return
        self._checked_at = now
        new = [tp for tp in partitions if tp not in self._targets]
        if not new:
            return
        for topic, p in new:
            try:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            except Exception:  # the partition's EOF will tell instead
                high = _UNKNOWN_END
            self._targets[(topic, p)] = high
            if high == 0:
                self._caught_up.add((topic, p))
        self._consumer.incremental_assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for topic, p in new]
        )
        self._check_ready()

    def _reached(self, tp: tuple[str, int]) -> None:
        if tp not in self._caught_up:
            self._caught_up.add(tp)
            self._check_ready()

    def _check_ready(self) -> None:
        if not self._ready.is_set() and self._caught_up >= set(self._targets):
            self._mark_current(True)
            self._ready.set()
            if self.on_ready is not None:
                self.on_ready()

    def _mark_current(self, current: bool) -> None:
        if current:
            self._current_at = time.monotonic()
        self._current = current

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in _DOWN:
            self._current = False
        log.debug("%s: %s", self.name, err.str())

    def _on_stats(self, raw: str) -> None:
        """Current = every partition's leader is up and read up to its high offset."""
        if not self._ready.is_set():
            return
        stats = json.loads(raw)
        brokers = {b["nodeid"]: b["state"] for b in stats.get("brokers", {}).values()}
        topics = stats.get("topics", {})
        current = True
        for topic, p in self._targets:
            ps = topics.get(topic, {}).get("partitions", {}).get(str(p))
            if ps is None or brokers.get(ps.get("leader")) != "UP":
                current = False
                break
            read = max(ps.get("app_offset", -1), ps.get("eof_offset", -1))
            if ps.get("fetch_state") != "active" or read < ps.get("hi_offset", 0):
                current = False
                break
        self._mark_current(current)
