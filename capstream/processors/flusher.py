"""The flusher: writes dirty state, waits until it and every derived record are durable,
then acks and commits the records behind them.

Hot state lives in :class:`PartitionState`; the flusher writes each dirty value once per
flush into the ``accounts`` / ``bots`` / ``feed`` tables (RocksDB, one write batch per
partition) and their changelogs, through a producer of its own (one per ownership, gated by
the membership lease). Flushes run every ``flush_interval_s`` but take at most
``flush_share`` of the time, in slices, so records keep flowing while a large one runs.

Everything Kafka- or Faust-specific is injected (the table stores, the sender of decisions,
the commit, the changelog producer), so it is tested with fakes (``tests/unit/processors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from capstream.processors.metrics import Metrics
from capstream.processors.options import WorkerOptions
from capstream.processors.partition import CLOCK_KEY, EPOCH_KEY, PartitionState

log = logging.getLogger(__name__)
SLICE_S = 0.001
PAUSE_S = 0.009
"""A paced flush serialises in slices of ~1 ms and, while records keep arriving, pauses 9 ms
after each: a record waits for at most one slice, and a flush takes a tenth of the event
loop while it runs, so a worker short of CPU does not fall behind the stream during one.
(Slices of 3 ms with 6 ms pauses, a third of the loop, held the loop ~6-7 ms at a time, and
probes whose decision overlapped a flush took ~15 ms longer at the median and twice as long
at the p99 at 5,000 events/s; see the processors README, "Issue 14".) When no record came
for ``IDLE_S`` the flush goes on at once (a backlog's end, an idle stream)."""
IDLE_S = 0.05
WRITE_VALUES = 128
"""Serialised values go to the tables (RocksDB + a changelog batch) this many at a time at
most: a write holds the loop ~1 ms per 100 values, and the changelog gets batches of a
useful size whatever the slice."""

Offsets = dict[tuple[str, int], int]
"""(topic, partition) -> the next offset to read (what a commit stores)."""


class Fence(Protocol):
    """What the flusher asks of the worker: may it write, and what to do when it may not."""

    def may_write(self) -> bool: ...

    def lapse(self, reason: str) -> None: ...

    @property
    def failure(self) -> BaseException | None: ...

    async def fail(self, exc: BaseException) -> None: ...


class Store(Protocol):
    """One table addressed by partition (:class:`capstream.processors.tables.TableStore`)."""

    async def write(
        self, partition: int, values: list[tuple[bytes, bytes]], producer: Any
    ) -> Awaitable[Any]: ...


class Sender(Protocol):
    """Hands the outbox to the producer (:class:`capstream.processors.sender.Sender`)."""

    async def drain(self) -> None: ...

    def take_sends(self) -> list[asyncio.Future[Any]]: ...


class Ack(Protocol):
    """A stream that acks an event (Faust's ``stream.noack()``)."""

    async def ack(self, event: Any) -> Any: ...


class LapsedError(Exception):
    """The membership lease lapsed in the middle of a flush."""


class Flusher:
    """Acks, paced flushes and the changelog producer of one worker."""

    def __init__(
        self,
        options: WorkerOptions,
        metrics: Metrics,
        partitions: Mapping[int, PartitionState],
        stores: tuple[Store, Store, Store],
        sender: Sender,
        fence: Fence,
        commit: Callable[[Offsets], Awaitable[None]],
        new_producer: Callable[[Callable[[], bool]], Awaitable[Any]],
        after_flush: Callable[[], None] = lambda: None,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.partitions = partitions
        self.accounts, self.bots, self.feed = stores
        self.sender = sender
        self.fence = fence
        self._commit_offsets = commit
        self._new_producer = new_producer
        self._after_flush = after_flush
        self.acks: list[tuple[Ack, Any]] = []
        """(stream, event) of every record processed since the last flush, in order."""
        self.records_seen = 0
        self._lock: asyncio.Lock | None = None
        self._now: asyncio.Event | None = None
        self._producer: Any = None
        self._epoch = 0
        """Counts ownerships: a changelog producer sends only in the one it was made in."""
        self._stopping: asyncio.Future[None] | None = None

    # -- what the agents call ----------------------------------------------------------------

    def processed(self, stream: Ack, event: Any) -> None:
        """A record was processed: ack it at the next flush that makes its results durable."""
        self.acks.append((stream, event))

    def soon(self) -> None:
        """Flush at once (a partition applied ``flush_events`` since the last flush)."""
        if self._now is not None:
            self._now.set()

    # -- ownership ---------------------------------------------------------------------------

    def new_ownership(self) -> None:
        """A changelog producer made before now sends nothing more."""
        self._epoch += 1

    def drop(self) -> None:
        """Forget the records processed since the last flush (never acked: read again) and
        retire this ownership's changelog producer."""
        self.acks.clear()
        self._epoch += 1
        if self._producer is not None:
            producer, self._producer = self._producer, None
            self._stopping = asyncio.ensure_future(producer.stop())

    async def producer(self) -> Any:
        """The changelog producer of this ownership (started on first use)."""
        if self._producer is None:
            epoch = self._epoch
            producer = await self._new_producer(
                lambda: self.fence.may_write() and self._epoch == epoch
            )
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    # -- flushing ----------------------------------------------------------------------------

    def _sync(self) -> tuple[asyncio.Lock, asyncio.Event]:
        if self._lock is None or self._now is None:
            self._lock = asyncio.Lock()
            self._now = asyncio.Event()
        return self._lock, self._now

    async def run(self) -> None:
        """Flush every ``flush_interval_s``, early when the stream goes idle, and at most
        ``flush_share`` of the time; a flush that fails for good stops the worker."""
        _, flush_now = self._sync()
        interval = self.options.flush_interval_s
        wait = interval
        while True:
            # Sleep `wait`, but flush early once the stream goes idle: a flush then competes
            # with nothing, and the offsets of the last records get committed.
            deadline = time.monotonic() + wait
            seen = self.records_seen
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(flush_now.wait(), min(left, interval))
                if flush_now.is_set() or (self.records_seen == seen and self.acks):
                    break
                seen = self.records_seen
            flush_now.clear()
            try:
                busy = await self.flush(paced=True)
            except Exception as exc:  # a send that failed for good: restart from the changelog
                log.exception("flush failed; the worker stops and replays from its last commit")
                await self.fence.fail(exc)
                return
            # Keep flushing to at most flush_share of the time: the cost of a flush grows with
            # the number of distinct dirty values, not with the events behind them.
            wait = max(interval, busy / self.options.flush_share - busy)

    async def flush(self, partitions: Iterable[int] | None = None, *, paced: bool = False) -> float:
        """Write dirty state (RocksDB + changelog), wait until the broker has it and every
        decision derived from the records read so far, then ack and commit those records.

        ``paced``: serialise in slices of ``SLICE_S`` with ``PAUSE_S`` pauses while records
        keep arriving (one in the last ``IDLE_S``), so they flow with low latency while a
        large flush runs in the background. Returns the time spent working (not pausing), in
        seconds.
        """
        lock, _ = self._sync()
        async with lock:
            if not self.fence.may_write():
                self.fence.lapse("membership lease lapsed before a flush")
                return 0.0
            pending: list[Awaitable[Any]] = []
            try:
                return await self._flush(partitions, paced, pending)
            except LapsedError:
                self.fence.lapse("membership lease lapsed during a flush")
                return 0.0
            except Exception:
                if self.fence.may_write():
                    raise
                # Refused by the gate (or failed) after the lease lapsed: not a failure of
                # the broker; the next owner has (or will have) the partitions.
                self.fence.lapse("membership lease lapsed during a flush")
                return 0.0
            finally:
                for fut in pending:  # refused or not: nobody waits for them any more
                    if isinstance(fut, asyncio.Future):
                        fut.add_done_callback(consume)

    async def _flush(
        self, partitions: Iterable[int] | None, paced: bool, futures: list[Awaitable[Any]]
    ) -> float:
        started = time.perf_counter()
        acks, self.acks = self.acks, []
        # The event clock persisted is the one of the acked records: every state written
        # below includes at least those records, so a restart's replay rebuilds the same
        # clock (one taken later could run ahead of a state written earlier).
        targets = list(partitions if partitions is not None else self.partitions)
        clocks: dict[int, int] = {}
        for p in targets:
            part = self.partitions.get(p)
            if part is not None and part.clock_dirty:
                part.clock_dirty = False
                clocks[p] = part.clock_ms
        await self.sender.drain()
        futures.extend(self.sender.take_sends())
        producer = await self.producer()
        written = 0
        paused = 0.0
        seen = self.records_seen
        live = slice_end = time.perf_counter()  # when a record was last seen arriving
        slice_end += SLICE_S
        for p in targets:
            part = self.partitions.get(p)
            if part is None:
                continue
            self._check()
            rows = part.take_feed()
            futures.append(await self.feed.write(p, [(k, v) for k, v, _ in rows], producer))
            dirty = part.take_dirty()
            account_values: list[tuple[bytes, bytes]] = []
            bot_values: list[tuple[bytes, bytes]] = []
            for n, account_id in enumerate(dirty, 1):
                account, bots = part.serialize(account_id)
                if account is not None:
                    account_values.append((account_id.encode(), account))
                bot_values.extend(bots)
                last = n == len(dirty)
                if last or len(account_values) + len(bot_values) >= WRITE_VALUES:
                    self._check()
                    futures.append(await self.bots.write(p, bot_values, producer))
                    futures.append(await self.accounts.write(p, account_values, producer))
                    written += len(account_values) + len(bot_values)
                    account_values, bot_values = [], []
                if not last and (now := time.perf_counter()) >= slice_end:
                    # The stream's turn. A value serialised before the pause and written
                    # after it is older than the account may be by then: the account is
                    # dirty again, and the next flush writes it after this one's.
                    if self.records_seen != seen:
                        seen, live = self.records_seen, now
                    if paced and now - live < IDLE_S:
                        await asyncio.sleep(PAUSE_S)
                        paused += time.perf_counter() - now
                    else:
                        await asyncio.sleep(0)
                    slice_end = time.perf_counter() + SLICE_S
            if p in clocks:
                self._check()
                clock = [(CLOCK_KEY, str(clocks[p]).encode())]
                futures.append(await self.accounts.write(p, clock, producer))
            if part.epoch_dirty:
                part.epoch_dirty = False
                futures.append(await self.write_epoch(part, producer))
        busy = time.perf_counter() - started - paused
        if futures:
            await asyncio.gather(*futures)
        futures.clear()
        failure = self.fence.failure
        if failure is not None:  # a record derived from these was never sent
            raise RuntimeError("a send failed; nothing more is acked") from failure
        self._check()  # everything landed, but the next owner replays these records
        for stream, event in acks:
            await stream.ack(event)
        await self._commit(acks)
        if written or acks:
            self.metrics.flushes.inc()
            self.metrics.flushed_values.inc(written)
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
        self._after_flush()
        return busy

    def _check(self) -> None:
        if not self.fence.may_write():
            raise LapsedError

    async def write_epoch(self, part: PartitionState, producer: Any) -> Awaitable[Any]:
        epoch = [(EPOCH_KEY, str(part.epoch).encode())]
        return await self.accounts.write(part.partition, epoch, producer)

    async def write_epochs(self, parts: list[PartitionState]) -> None:
        """Make each loaded partition's epoch durable before any of its decisions goes out:
        a next owner then starts above every version this one publishes."""
        if not parts or not self.fence.may_write():
            return
        producer = await self.producer()
        futures = []
        for part in parts:
            part.epoch_dirty = False
            futures.append(await self.write_epoch(part, producer))
        await asyncio.gather(*futures)

    async def _commit(self, acks: list[tuple[Ack, Any]]) -> None:
        """Commit, per partition, the offset after the last record just acked.

        Every record of a partition is processed in order and acked by a flush, so once a
        flush has acked offset ``n`` every record up to ``n`` is durable.
        """
        offsets: Offsets = {}
        for _, event in acks:
            msg = event.message
            key = (msg.topic, msg.partition)
            if msg.offset + 1 > offsets.get(key, -1):
                offsets[key] = msg.offset + 1
        if not offsets or not self.fence.may_write():
            return
        await self._commit_offsets(offsets)


async def changelog_producer(config: dict[str, Any], may_send: Callable[[], bool]) -> Any:
    """A started producer for the tables' changelogs whose every request is refused unless
    ``may_send()`` (the membership lease holds and its ownership is the current one)."""
    from aiokafka import AIOKafkaProducer

    from capstream.processors.fencing import gate_client

    producer = AIOKafkaProducer(
        **config,
        client_id="capstream-processors-changelog",
        acks="all",
        enable_idempotence=True,
        max_batch_size=128 * 1024,  # a flush's values in few, modest requests
        max_request_size=1024 * 1024,
        # Usage states are mostly small integers and zeros: zstd shrinks a flush ~25x at
        # ~870 MB/s, so the broker (often on the same machine) writes and replicates a
        # fraction of the bytes, and recovery reads a fraction too. (aiokafka's lz4 is
        # level 9: 51 MB/s, a tenth of the worker's CPU here.)
        compression_type="zstd",
    )
    # Every changelog write is state: refused once the membership may have lapsed, and
    # after the ownership it was made in (a batch it still holds then is stale).
    gate_client(producer.client, may_send, None)
    await producer.start()
    return producer


def consume(fut: Any) -> None:
    """A done callback that retrieves a future's exception (nobody else will)."""
    if not fut.cancelled():
        fut.exception()
