"""The sink's consume loop: Kafka records into per-partition batches, commits after writes."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from capstream.errors import CapstreamError, DecodeError
from capstream.sinks.batches import Batch, PartitionBuffer
from capstream.sinks.dead_letters import DeadLetters
from capstream.sinks.frames import body_of
from capstream.sinks.intake import Intake, UsageIntake
from capstream.sinks.options import SinkOptions
from capstream.sinks.port import Storage
from capstream.sinks.store import StoreUnavailableError
from capstream.sinks.tables import SinkTable
from capstream.sinks.writer import BatchWriter, OnWritten
from capstream.streams.codecs import codec

log = logging.getLogger(__name__)
TP = tuple[str, int]


class SinkFailedError(CapstreamError):
    """The sink cannot go on (a writer thread died): the process must exit non-zero."""


class Consumer(Protocol):
    """The part of ``confluent_kafka.Consumer`` the sink uses (a fake stands in for tests)."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None: ...
    def consume(self, num_messages: int, timeout: float) -> list[Any]: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any: ...
    def close(self) -> None: ...


@dataclass(slots=True)
class SinkStats:
    """Counters a running sink reports (and ``run`` returns)."""

    records: int = 0
    written: int = 0
    batches: int = 0
    dead_letters: int = 0
    """Dead letters sent by the intake: whole records and single refused events."""
    bad_events: int = 0
    """Usage events refused by the shared validation (each one a dead letter)."""
    misplaced: int = 0
    """Usage events of accounts homed on another partition: not stored where they landed
    (the worker sends them home, where the sink stores them)."""
    poison: int = 0
    """Records whose intake raised (a defect): dead-lettered as ``processing_error``."""
    rejected: int = 0
    tombstones: int = 0
    replay_skipped: int = 0
    pauses: int = 0
    commits: int = 0


class SinkRunner:
    """Consumes the sink topics and writes them through a ``Storage``, exactly once.

    Per partition: records are batched until ``batch_bytes`` or ``flush_interval_s``; the
    writer thread stores each batch under its token; offsets are committed only after the
    store acknowledged (and after any dead letters of the range are on the broker). Above
    ``max_buffered_bytes`` every partition is paused until half of it is written.
    """

    def __init__(
        self,
        consumer: Consumer,
        tables: tuple[SinkTable, ...],
        storage: Storage,
        dead_letters: DeadLetters,
        options: SinkOptions,
        *,
        on_written: OnWritten | None = None,
        usage_partitions: int = 0,
    ) -> None:
        self.consumer = consumer
        self.options = options
        self.storage = storage
        self.dead_letters = dead_letters
        self.tables = {t.topic: t for t in tables}
        self.codecs = {t.topic: codec(t.schema) for t in tables}
        self.usage = {
            t.topic: UsageIntake(
                self.codecs[t.topic],
                partitions=usage_partitions,
                max_record_bytes=options.max_record_bytes,
                max_future_skew_ms=int(options.max_future_skew_s * 1000),
            )
            for t in tables
            if t.schema == "UsageBatch"
        }
        self.writer = BatchWriter(
            storage,
            dead_letters,
            lanes=options.writer_lanes,
            retry_initial_s=options.retry_initial_s,
            retry_max_s=options.retry_max_s,
            on_written=on_written,
        )
        self.buffers: dict[TP, PartitionBuffer] = {}
        self.held: dict[TP, list[Any]] = {}  # records of partitions whose intents are unknown
        self.to_commit: dict[TP, int] = {}
        self.paused = False
        self.stats = SinkStats()
        self._prime_after = 0.0
        self._prime_delay = options.retry_initial_s
        self._repause = False
        self._closing = False

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe and start the writer thread (``run`` does it; tests drive ``step``)."""
        self.consumer.subscribe(
            list(self.tables),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.writer.start()

    def run(self, stop: threading.Event) -> SinkStats:
        """Consume until ``stop`` is set, then write and commit what was read, and close."""
        self.start()
        next_stats = time.monotonic() + self.options.stats_interval_s
        try:
            while not stop.is_set():
                self.step(timeout=0.05)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.options.stats_interval_s
                    log.info("sink: %s", self.stats)
        finally:
            self.close()
        return self.stats

    def step(self, timeout: float) -> None:
        """One loop turn: read, batch, hand due batches to the writer, commit, back-pressure.

        Raises ``SinkFailedError`` if a writer thread died: nothing would be written or
        committed any more, so the process must stop (and a supervisor restart it).
        """
        crashed = self.writer.crashed
        if crashed is not None:
            raise SinkFailedError(
                f"the sink's writer thread died: {type(crashed).__name__}: {crashed}"
            ) from crashed
        for msg in self.consumer.consume(self.options.poll_records, timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error: %s", err)
                continue
            self._accept(msg)
        if self.held:
            self._prime()
        self._seal_due()
        self._commit_acked()
        self._backpressure()

    def _accept(self, msg: Any) -> None:
        tp = (msg.topic(), msg.partition())
        held = self.held.get(tp)
        if held is not None:
            held.append(msg)
            return
        buf = self.buffers.get(tp)
        if buf is None:  # a record of a partition no longer assigned
            return
        offset = msg.offset()
        keep, sealed = buf.admit(offset)
        for full in sealed:
            self._submit(full)
        if not keep:
            self.stats.replay_skipped += 1
            return
        self.stats.records += 1
        batch = buf.open
        if batch is None:  # admit() always opens one; keeps the type checker informed
            return
        value, key = msg.value(), msg.key()
        if value is None and buf.table.compacted:
            self.stats.tombstones += 1
            batch.cover(offset)
        else:
            kind, ts = msg.timestamp()
            ts_ms = ts if kind else 0
            try:
                intake = self._intake(tp, value, ts_ms)
            except DecodeError as exc:
                self._dead_letter(tp, offset, key, value, exc.reason, str(exc))
                intake = Intake(None)
            except Exception as exc:  # a defect must not stop the sink: dead-letter the record
                self.stats.poison += 1
                log.error(
                    "%s[%d]@%d: the sink's intake raised %s; dead-lettered as processing_error",
                    tp[0], tp[1], offset, type(exc).__name__, exc_info=exc,
                )  # fmt: skip
                error = f"{type(exc).__name__}: {exc}"[:2000]
                self._dead_letter(tp, offset, key, value, "processing_error", error)
                intake = Intake(None)
            for bad in intake.bad:
                self.stats.bad_events += 1
                self._dead_letter(tp, offset, key, bad.raw, bad.reason, bad.error)
            self.stats.misplaced += intake.misplaced
            if intake.body is None:
                batch.cover(offset)
            else:
                batch.add(offset, key, value, intake.body, ts_ms)
        sealed_pin = buf.after_record(offset)
        if sealed_pin is not None:
            self._submit(sealed_pin)
        elif batch.pinned_token is None and batch.nbytes >= self.options.batch_bytes:
            self._submit(buf.seal_all(None))

    def _intake(self, tp: TP, value: bytes | None, ts_ms: int) -> Intake:
        """What to store of one record (a pure function of its bytes, partition and
        timestamp, so a batch rebuilt after a crash is the same batch)."""
        usage = self.usage.get(tp[0])
        if usage is not None:
            return usage.take(value, tp[1], ts_ms)
        return Intake(body_of(value, self.codecs[tp[0]]))

    def _dead_letter(
        self, tp: TP, offset: int, key: bytes | None, value: bytes | None, reason: str, error: str
    ) -> None:
        self.stats.dead_letters += 1
        self.dead_letters.send(tp[0], tp[1], offset, key, value, reason=reason, error=error)

    def _submit(self, batch: Batch | None) -> None:
        if batch is not None:
            self.writer.submit(batch)

    def _positions(self, tps: list[TP]) -> dict[TP, int]:
        if not tps:
            return {}
        got = self.consumer.position([TopicPartition(t, p) for t, p in tps])
        return {(x.topic, x.partition): x.offset for x in got if x.offset >= 0}

    def _seal_due(self) -> None:
        """Hand over batches that are full, or old enough while their lane is free.

        Full batches and complete recovery ranges go at once. A batch past
        ``flush_interval_s`` is sealed only when its lane has nothing waiting behind the
        batch being written, oldest first, one per lane: so it is written next, with
        everything its partition received until then. Sealing it earlier would only make it
        wait in the queue while newer records pile up behind it; when ClickHouse is the
        bottleneck, inserts get fewer and bigger by themselves, and a record waits about one
        round of the lane's inserts instead of two.
        """
        now = time.monotonic()
        pinned = [tp for tp, b in self.buffers.items() if b.open and b.open.pinned_token]
        positions = self._positions(pinned)
        opts = self.options
        free = self.writer.free_lanes()
        oldest: dict[int, tuple[float, TP]] = {}
        for tp, buf in self.buffers.items():
            self._submit(buf.seal_due(now, opts.batch_bytes, math.inf, positions.get(tp)))
            batch = buf.open
            if batch is None or batch.pinned_token is not None:
                continue
            if now - batch.opened_at < opts.flush_interval_s:
                continue
            lane = self.writer.lane_of(tp)
            if lane in free and (lane not in oldest or batch.opened_at < oldest[lane][0]):
                oldest[lane] = (batch.opened_at, tp)
        for _, tp in oldest.values():
            self._submit(self.buffers[tp].seal_due(now, opts.batch_bytes, 0.0, None))

    def _commit_acked(self, *, synchronous: bool = False) -> None:
        for batch in self.writer.take_acks():
            tp = (batch.topic, batch.partition)
            self.stats.batches += 1
            self.stats.written += len(batch)
            if tp in self.buffers:
                self.to_commit[tp] = max(self.to_commit.get(tp, 0), batch.last_offset + 1)
        self.stats.rejected = self.writer.rejected
        if not self.to_commit:
            return
        flush_s = 5.0 if synchronous else 0.5
        if self.dead_letters.pending and not self.dead_letters.flush(timeout=flush_s):
            log.warning("dead letters not yet on the broker; offsets stay uncommitted")
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.to_commit.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=not synchronous)
        except KafkaException as exc:
            log.warning("offset commit failed (%s); will retry", exc)
            return
        self.stats.commits += 1
        self.to_commit.clear()

    def _buffered_bytes(self) -> int:
        open_bytes = sum(b.open.nbytes for b in self.buffers.values() if b.open is not None)
        held = sum(len(m.value() or b"") for msgs in self.held.values() for m in msgs)
        return open_bytes + held + self.writer.queued_bytes

    def _backpressure(self) -> None:
        limit = self.options.max_buffered_bytes
        buffered = self._buffered_bytes()
        assigned = [TopicPartition(t, p) for t, p in [*self.buffers, *self.held]]
        if not self.paused and buffered > limit:
            self.consumer.pause(assigned)
            self.paused = True
            self.stats.pauses += 1
            log.warning(
                "paused consumption: %d MiB buffered (store %s)",
                buffered >> 20,
                f"failing: {self.writer.last_error}" if self.writer.retrying else "slow",
            )
        elif self.paused and self._repause:
            self.consumer.pause(assigned)
        elif self.paused and buffered <= limit // 2:
            self.consumer.resume(assigned)
            self.paused = False
            log.info("resumed consumption")
        self._repause = False

    # -- partitions coming and going --------------------------------------------------------

    def _prime(self) -> None:
        """Learn the last intent of newly assigned partitions, then replay their records."""
        if time.monotonic() < self._prime_after:
            return
        tps = list(self.held)
        try:
            intents = self.storage.intents(tps)
        except StoreUnavailableError as exc:
            log.warning("cannot read sink intents yet (%s); retrying", exc)
            self._prime_after = time.monotonic() + self._prime_delay
            self._prime_delay = min(self._prime_delay * 2, self.options.retry_max_s)
            return
        self._prime_delay = self.options.retry_initial_s
        for tp in tps:
            self.buffers[tp] = PartitionBuffer(self.tables[tp[0]], tp[1], intents.get(tp))
            for msg in self.held.pop(tp):
                self._accept(msg)

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.held[(p.topic, p.partition)] = []
        self._repause = self.paused
        self._prime()

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if self._closing:  # close() already wrote and committed what it could
            self._forget(tps)
            return
        positions = self._positions([tp for tp in tps if tp in self.buffers])
        for tp in tps:
            buf = self.buffers.get(tp)
            if buf is not None:
                self._submit(buf.seal_all(positions.get(tp)))
        if not self.writer.wait_idle(tps, self.options.revoke_timeout_s):
            log.warning(
                "revoked partitions still unwritten after %.0fs; the next owner reads them again",
                self.options.revoke_timeout_s,
            )
            self.writer.abandon(tps)
        self._commit_acked(synchronous=True)
        self._forget(tps)

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.writer.abandon(tps)
        self._forget(tps)

    def _forget(self, tps: list[TP]) -> None:
        for tp in tps:
            self.buffers.pop(tp, None)
            self.held.pop(tp, None)
            self.to_commit.pop(tp, None)

    def close(self) -> None:
        """Write what was read (up to ``shutdown_timeout_s``), commit it, close the consumer."""
        self._closing = True
        positions = self._positions(list(self.buffers))
        for tp, buf in self.buffers.items():
            self._submit(buf.seal_all(positions.get(tp)))
        if not self.writer.stop(drain=True, timeout=self.options.shutdown_timeout_s):
            log.warning("stopping with unwritten batches; they are re-read on the next start")
        self._commit_acked(synchronous=True)
        self.dead_letters.flush(timeout=5.0)
        self.consumer.close()
