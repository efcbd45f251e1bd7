"""The writer threads: sealed batches go to storage in order, retried with the same token."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from capstream.sinks.batches import Batch
from capstream.sinks.dead_letters import DeadLetters
from capstream.sinks.port import Rejected, Storage, TopicPartition
from capstream.sinks.store import StoreUnavailableError

log = logging.getLogger(__name__)

OnWritten = Callable[[Batch, list[Rejected]], None]


class _Lane:
    """One writer thread: batches one at a time, FIFO, so a partition's batches land in
    offset order.

    A failing store is retried with exponential backoff, forever (the queue stops growing
    because the consumer pauses); written batches are handed back through ``take_acks``
    so the consumer thread commits their offsets. Rejected records become dead letters.
    """

    def __init__(
        self,
        storage: Storage,
        dead_letters: DeadLetters,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        on_written: OnWritten | None = None,
        name: str = "capstream-sink-writer",
    ) -> None:
        self._storage = storage
        self._dead = dead_letters
        self._retry = (retry_initial_s, retry_max_s)
        self._on_written = on_written
        self._cond = threading.Condition()
        self._queue: deque[Batch] = deque()
        self._acks: list[Batch] = []
        self._abandoned: set[TopicPartition] = set()
        self._queued_bytes = 0
        self._busy: TopicPartition | None = None
        self._stopping = False
        self._draining = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.failures = 0
        self.last_error: str | None = None
        self.rejected = 0
        self.crashed: BaseException | None = None
        """Set when the thread died of an unexpected error: the sink must stop (its batches
        would never be written again, and nothing past them committed)."""

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        with self._cond:
            self._abandoned.discard((batch.topic, batch.partition))
            self._queue.append(batch)
            self._queued_bytes += batch.nbytes
            self._cond.notify_all()

    @property
    def queued_bytes(self) -> int:
        """Bytes of batches submitted and not yet written (counts toward the memory bound)."""
        with self._cond:
            return self._queued_bytes

    @property
    def retrying(self) -> bool:
        """True while the store is failing and the head batch waits for a retry."""
        return self.last_error is not None

    def take_acks(self) -> list[Batch]:
        """Batches written since the last call, in the order they were written."""
        with self._cond:
            acks, self._acks = self._acks, []
            return acks

    @property
    def backlog(self) -> int:
        """Batches queued behind the one being written (0: a new batch is written next)."""
        with self._cond:
            return len(self._queue) - (1 if self._busy is not None and self._queue else 0)

    def wait_idle(self, partitions: Iterable[TopicPartition], timeout: float) -> bool:
        """Wait until no batch of ``partitions`` is queued or being written."""
        wanted = set(partitions)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy in wanted or any(
                (b.topic, b.partition) in wanted for b in self._queue
            ):
                left = deadline - time.monotonic()
                if left <= 0 or self.crashed is not None:
                    return False
                self._cond.wait(left)
            return True

    def abandon(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the queued batches of partitions this process no longer owns (unwritten, so
        uncommitted: the new owner reads them again)."""
        with self._cond:
            self._abandoned.update(partitions)
            # The head batch may be mid-write: it stays and is dropped between retries.
            head = self._queue[0] if self._busy is not None and self._queue else None
            self._queue = deque(
                b for b in self._queue if b is head or (b.topic, b.partition) not in self._abandoned
            )
            self._queued_bytes = sum(b.nbytes for b in self._queue)
            self._cond.notify_all()

    def stop(self, *, drain: bool, timeout: float) -> bool:
        """Stop the thread; with ``drain``, first write what is queued (up to ``timeout``).
        Returns True if nothing was left unwritten."""
        with self._cond:
            self._draining = drain
            if not drain:
                self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            left = len(self._queue)
        if self._thread.is_alive():
            self._thread.join(2.0)
        return left == 0

    def _next(self) -> Batch | None:
        with self._cond:
            while not self._queue:
                if self._stopping or self._draining:
                    return None
                self._cond.wait(0.5)
            if self._stopping:
                return None
            batch = self._queue[0]
            self._busy = (batch.topic, batch.partition)
            return batch

    def _done(self, batch: Batch, *, written: bool) -> None:
        with self._cond:
            if self._queue and self._queue[0] is batch:
                self._queue.popleft()
                self._queued_bytes -= batch.nbytes
            if written:
                self._acks.append(batch)
            self._busy = None
            self._cond.notify_all()

    def _announce_upcoming(self) -> None:
        """Record in one call the intents of the next batch of every queued partition.

        Only a partition's first queued batch may be announced: all its earlier batches are
        written, so after a crash its records before the intent are known written.
        """
        with self._cond:
            seen: set[TopicPartition] = set()
            upcoming = []
            for b in self._queue:
                tp = (b.topic, b.partition)
                if tp not in seen:
                    seen.add(tp)
                    if not b.announced and len(b):
                        upcoming.append(b)
        if len(upcoming) > 1:
            with contextlib.suppress(StoreUnavailableError):  # then each write records its own
                self._storage.announce(upcoming)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            log.critical("sink writer thread %s died", self._thread.name, exc_info=exc)
            with self._cond:
                self.crashed = exc
                self._cond.notify_all()

    def _loop(self) -> None:
        while (batch := self._next()) is not None:
            self._announce_upcoming()
            rejected = self._write(batch)
            if rejected is None:
                self._done(batch, written=False)
                continue
            for r in rejected:
                self._dead.send(
                    batch.topic,
                    batch.partition,
                    r.offset,
                    batch.keys[r.index],
                    batch.values[r.index],
                    reason="rejected",
                    error=r.error,
                )
            self.rejected += len(rejected)
            if self._on_written is not None:
                self._on_written(batch, rejected)
            self._done(batch, written=True)

    def _write(self, batch: Batch) -> list[Rejected] | None:
        """Write until it succeeds; None if the batch was abandoned or the writer stopped."""
        delay, cap = self._retry
        tp = (batch.topic, batch.partition)
        while True:
            try:
                rejected = self._storage.write(batch)
            except StoreUnavailableError as exc:
                error = str(exc)
            except Exception as exc:  # a bug or an unexpected client error: retry, loudly
                log.exception("unexpected error writing %s", batch.token)
                error = f"{type(exc).__name__}: {exc}"
            else:
                if self.last_error is not None:
                    log.warning("ClickHouse is back; writing resumes")
                self.last_error = None
                return rejected
            self.failures += 1
            if self.last_error is None:
                log.warning("cannot write %s (%s); retrying every <=%.0fs", batch.token, error, cap)
            self.last_error = error
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or tp in self._abandoned, delay)
                if self._stopping or tp in self._abandoned:
                    return None
            delay = min(delay * 2, cap)


class BatchWriter:
    """Writes batches on ``lanes`` threads; a partition always goes to the same lane, so its
    batches land in offset order while different partitions are inserted in parallel.

    A failing store is retried with exponential backoff, forever (the queues stop growing
    because the consumer pauses); written batches are handed back through ``take_acks``
    so the consumer thread commits their offsets. Rejected records become dead letters.
    """

    def __init__(
        self,
        storage: Storage,
        dead_letters: DeadLetters,
        *,
        lanes: int = 1,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        on_written: OnWritten | None = None,
    ) -> None:
        self._lanes = [
            _Lane(
                storage,
                dead_letters,
                retry_initial_s=retry_initial_s,
                retry_max_s=retry_max_s,
                on_written=on_written,
                name=f"capstream-sink-writer-{i}",
            )
            for i in range(max(1, lanes))
        ]
        self._lane_of: dict[TopicPartition, _Lane] = {}

    def _lane(self, tp: TopicPartition) -> _Lane:
        lane = self._lane_of.get(tp)
        if lane is None:
            lane = self._lane_of[tp] = self._lanes[len(self._lane_of) % len(self._lanes)]
        return lane

    def start(self) -> None:
        for lane in self._lanes:
            lane.start()

    def submit(self, batch: Batch) -> None:
        self._lane((batch.topic, batch.partition)).submit(batch)

    @property
    def queued_bytes(self) -> int:
        """Bytes of batches submitted and not yet written (counts toward the memory bound)."""
        return sum(lane.queued_bytes for lane in self._lanes)

    @property
    def retrying(self) -> bool:
        """True while the store is failing and a batch waits for a retry."""
        return any(lane.retrying for lane in self._lanes)

    @property
    def last_error(self) -> str | None:
        return next((lane.last_error for lane in self._lanes if lane.last_error), None)

    @property
    def rejected(self) -> int:
        return sum(lane.rejected for lane in self._lanes)

    @property
    def failures(self) -> int:
        return sum(lane.failures for lane in self._lanes)

    @property
    def crashed(self) -> BaseException | None:
        """The error a writer thread died of, if one did (the sink must then stop)."""
        return next((lane.crashed for lane in self._lanes if lane.crashed), None)

    def take_acks(self) -> list[Batch]:
        """Batches written since the last call (in order within each partition)."""
        return [batch for lane in self._lanes for batch in lane.take_acks()]

    def lane_of(self, tp: TopicPartition) -> int:
        """The lane that writes ``tp`` (assigned on first use, then fixed)."""
        return self._lanes.index(self._lane(tp))

    def free_lanes(self) -> set[int]:
        """Lanes with no batch waiting behind the one being written: a batch sealed for one
        of them now is written next. Sealing only then keeps inserts as fresh as the store
        allows; the others' open batches keep growing (fewer, bigger inserts)."""
        return {i for i, lane in enumerate(self._lanes) if lane.backlog == 0}

    def wait_idle(self, partitions: Iterable[TopicPartition], timeout: float) -> bool:
        """Wait until no batch of ``partitions`` is queued or being written."""
        wanted = list(partitions)
        deadline = time.monotonic() + timeout
        return all(
            lane.wait_idle(wanted, max(0.0, deadline - time.monotonic())) for lane in self._lanes
        )

    def abandon(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the queued batches of partitions this process no longer owns."""
        wanted = list(partitions)
        for lane in self._lanes:
            lane.abandon(wanted)

    def stop(self, *, drain: bool, timeout: float) -> bool:
        """Stop every lane (writing what is queued first with ``drain``); True if all done."""
        deadline = time.monotonic() + timeout
        done = [
            lane.stop(drain=drain, timeout=max(0.1, deadline - time.monotonic()))
            for lane in self._lanes
        ]
        return all(done)
