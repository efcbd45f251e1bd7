"""The Faust app: usage and cap-hit agents, the usage tables, the flusher and the timers.

Thin by rule: decode -> core (through :class:`PartitionState`) -> send. Offsets are acked only
by the flusher, after the RocksDB + changelog writes and every record derived from the acked
messages are acknowledged by the broker; Faust then commits them. Faust's own
``exactly_once`` is not used: replays are harmless (per-partition watermarks, recent ids,
whole versioned states, deterministic notification ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import faust

from capstream.core import CapHit, Effects, UsageEvent
from capstream.errors import DecodeError
from capstream.gateway.partitioner import kafka_partitioner
from capstream.processors.catalog import Catalog
from capstream.processors.catalog_reader import CatalogReader
from capstream.processors.deadletters import DeadLetters
from capstream.processors.decode import UsageDecoder, decode_cap_hit
from capstream.processors.fencing import Membership, gate_client, watch
from capstream.processors.metrics import Metrics
from capstream.processors.options import WorkerOptions
from capstream.processors.outbox import Outbox, Outgoing
from capstream.processors.partition import CLOCK_KEY, EPOCH_KEY, PartitionState
from capstream.processors.tables import TableStore
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
_YIELD_S = 0.005
"""The usage agent yields to the event loop at least this often."""
_SLICE_S = 0.003
_PAUSE_S = 0.006
"""A paced flush works in slices of 3 ms with 6 ms pauses: a record waits for at most one
slice, and the stream gets the loop to itself two thirds of the time while a flush runs."""
_DECISION_LINGER_S = 0.002
"""The decisions producer's linger."""
_WATCH_S = 0.25
"""The watchdog looks at the membership lease and the event loop's stalls this often."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _LapsedError(Exception):
    """The membership lease lapsed in the middle of a flush."""


class Processors:
    """One worker's processors: build with settings, then run with :func:`run_worker`."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.topics = Topics(settings.topic_prefix)
        self.metrics = Metrics()
        self.catalog = Catalog()
        self.outbox = Outbox(self.topics)
        self.decoder = UsageDecoder(options.max_record_bytes, settings.usage_partitions)
        self.partitions: dict[int, PartitionState] = {}
        self.stopping = False
        self._acks: list[tuple[Any, Any]] = []
        self._sends: list[asyncio.Future[Any]] = []
        self._drain_lock: asyncio.Lock | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._flush_now: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._timer_due = 1 << 62
        self._positions: dict[int, int] = {}
        self._failed: BaseException | None = None
        self._catalog_task: asyncio.Future[None] | None = None
        self._records_seen = 0
        self.rerouted = 0
        self._yielded = 0.0
        self._record_done = 0.0
        self._producer: Any = None
        self.membership = Membership(
            options.app_id(settings.topic_prefix), options.session_timeout_s
        )
        watch(self.membership)
        self._owner = False
        """True from the recovery of an assignment until its revoke or a lapse of the
        membership: only then is state processed and written (see ``fencing``)."""
        self._epoch = 0
        """Counts ownerships: a changelog producer sends only in the one it was made in."""
        self._owned_since = 0.0
        self._gated = False
        self._expected: dict[tuple[str, int], int] = {}
        """Per (topic, partition), the offset of the next record to process."""
        self._sought: dict[tuple[str, int], int] = {}
        self._commits_owned = False
        self._stopping_producer: asyncio.Future[None] | None = None
        self._state_topics = frozenset(
            (self.topics.control, self.topics.notifications, self.topics.feed)
        )
        self.app = self._build_app()
        self.dead_letters = DeadLetters(self.outbox, self.metrics)
        self.catalog_reader = CatalogReader(
            settings, self.catalog, self.metrics, self._changed, self.dead_letters.send_raw
        )

    # -- wiring ------------------------------------------------------------------------------

    def _build_app(self) -> Any:
        _short_fetch_wait()
        s, o = self.settings, self.options
        data = s.data_dir.resolve() / "processors"
        app = faust.App(
            o.app_id(s.topic_prefix),
            broker=[f"kafka://{b.strip()}" for b in s.bootstrap_servers.split(",")],
            broker_credentials=_credentials(s),
            store="rocksdb://",
            datadir=str(data),
            tabledir=str(data / "tables"),
            web_enabled=False,
            autodiscover=False,
            topic_partitions=s.usage_partitions,
            topic_replication_factor=s.replication_factor,
            consumer_auto_offset_reset="earliest",
            # Offsets are committed by the flusher (``_commit``), never by Faust's own
            # bookkeeping: these only set how often Faust would look (it finds nothing).
            broker_commit_interval=3600.0,
            broker_commit_every=1 << 62,
            broker_session_timeout=o.session_timeout_s,
            broker_heartbeat_interval=min(3.0, o.session_timeout_s / 3),
            producer_acks=-1,
            # Decisions of records a few ms apart share a produce request (at 5,000 events/s
            # in small records, one request per record cost the worker more than deciding).
            producer_linger=_DECISION_LINGER_S,
            producer_partitioner=kafka_partitioner,
            processing_guarantee="at_least_once",
            stream_wait_empty=False,  # the flusher acks; shutdown and revoke flush first
            table_standby_replicas=0,
            topic_disable_leader=True,
        )
        n = s.usage_partitions
        tables = {
            name: app.Table(name, key_type=bytes, value_type=bytes, partitions=n)
            for name in ("accounts", "bots", "feed")
        }
        self.accounts = TableStore(tables["accounts"])
        self.bots = TableStore(tables["bots"])
        self.feed = TableStore(tables["feed"])
        tables["bots"].on_recover(self._on_recovered)
        usage = app.topic(
            self.topics.usage, partitions=n, key_serializer="raw", value_serializer="raw"
        )
        caphits = app.topic(
            self.topics.caphits, partitions=n, key_serializer="raw", value_serializer="raw"
        )
        app.agent(usage, name="usage")(self._usage_agent)
        app.agent(caphits, name="caphits")(self._caphits_agent)
        app.task(self._flusher)
        app.task(self._watchdog)
        if not o.event_time:
            app.task(self._timers)
        app.on_partitions_revoked.connect(cast(Any, self._on_revoked))
        app.on_partitions_assigned.connect(cast(Any, self._on_assigned))
        return app

    def _events(self) -> None:
        if self._drain_lock is None:
            self._drain_lock = asyncio.Lock()
            self._flush_lock = asyncio.Lock()
            self._flush_now = asyncio.Event()
            self._wake = asyncio.Event()
        if not self._commits_owned:
            # Faust's bookkeeping of acked offsets can count offsets as acked that no agent
            # has processed (see ``_commit``): it never commits, the flusher does.
            consumer = self.app.consumer
            consumer._filter_committable_offsets = _nothing_to_commit
            self._commits_owned = True
        if self._catalog_task is None:
            # Started by whichever comes first (an agent, or the tables' recovery callback,
            # which Faust awaits before it starts app tasks): both wait for it.
            self._catalog_task = asyncio.ensure_future(self._read_catalog())

    # -- agents ------------------------------------------------------------------------------

    async def _usage_agent(self, stream: Any) -> None:
        self._events()
        await self.catalog_reader.ready.wait()
        s = stream.noack()
        topic = self.topics.usage
        records = self.metrics.records.labels(topic=topic)
        record_delay = self.metrics.record_delay.observe
        async for event in s.events():
            if self.stopping or not self._owner:
                continue  # not acked: read again after the restart (or by the next owner)
            started = time.perf_counter()
            if started - self._record_done > 0.0005:
                self._yielded = started  # the stream suspended in between: others ran
            msg = event.message
            if not await self._in_order(msg):
                continue
            records.inc()
            self._records_seen += 1
            part = self._partition(msg.partition)
            now = wall_ms()
            record_delay(max(0.0, now / 1000 - msg.timestamp))
            try:
                self._apply_usage(part, msg, now)
            except Exception as exc:  # a defect must not stop the stream: dead-letter it
                self._poisoned(topic, msg, exc)
            self._positions[msg.partition] = msg.offset
            self._acks.append((s, event))
            due = part.next_deadline
            if due is not None and due < self._timer_due and self._wake is not None:
                self._wake.set()
            if self.outbox.queue:
                await self.drain()
            if part.applied >= self.options.flush_events and self._flush_now is not None:
                self._flush_now.set()
            # With a backlog the stream hands over records without suspending: let the
            # flusher, the timers and the consumer run at least every few milliseconds.
            self._record_done = time.perf_counter()
            if self._record_done - self._yielded >= _YIELD_S:
                await asyncio.sleep(0)
                self._yielded = self._record_done = time.perf_counter()

    def _apply_usage(self, part: PartitionState, msg: Any, now: int) -> None:
        """Decode one usage record and apply its events; dead-letter what is refused and
        send misplaced events on to their account's partition."""
        topic = self.topics.usage
        try:
            decoded = self.decoder.decode(msg.value, self._latest(msg, now), msg.partition)
        except DecodeError as exc:
            self.dead_letters.send(topic, msg, exc.reason, str(exc))
            return
        for bad in decoded.bad:
            self.dead_letters.send(topic, msg, bad.reason, bad.error, value=bad.raw)
        if decoded.misplaced:
            self._reroute(msg, decoded)
        dups = part.duplicates
        n = part.apply(msg.offset, decoded, now, self._refuse(msg))
        self.metrics.events.inc(n)
        if part.duplicates != dups:
            self.metrics.duplicates.inc(part.duplicates - dups)

    def _latest(self, msg: Any, now: int) -> int:
        """The latest event time a record may carry: its broker time (the topic stamps
        LogAppendTime) plus the allowed skew, the bound the sink applies too."""
        ts = msg.timestamp
        stamped = round(ts * 1000) if ts and ts > 0 else now
        return stamped + int(self.options.max_future_skew_s * 1000)

    def _reroute(self, msg: Any, decoded: Any) -> None:
        """Events of accounts that live on another partition go there, one event a record,
        keyed by account (counted there once; the sink skips them here too)."""
        queue = self.outbox.queue
        for m in decoded.misplaced:
            queue.append(
                Outgoing(self.topics.usage, m.account_id.encode(), m.raw, None, msg.partition,
                         to_partition=m.home)
            )  # fmt: skip
        self.metrics.rerouted.inc(len(decoded.misplaced))
        self.rerouted += len(decoded.misplaced)
        if self.rerouted == len(decoded.misplaced):  # the first ones: say it once
            log.warning(
                "usage record %s[%d]@%d holds events of accounts homed on other partitions; "
                "they are sent on (producers must key by account_id with Kafka's murmur2)",
                msg.topic, msg.partition, msg.offset,
            )  # fmt: skip

    def _poisoned(self, topic: str, msg: Any, exc: Exception) -> None:
        """Processing ``msg`` raised: dead-letter it, count it, log it, and go on."""
        self.metrics.poison.labels(topic=topic).inc()
        log.error(
            "%s[%d]@%d: processing raised %s; dead-lettered as processing_error",
            topic, msg.partition, msg.offset, type(exc).__name__, exc_info=exc,
        )  # fmt: skip
        self.dead_letters.send(
            topic, msg, "processing_error", f"{type(exc).__name__}: {exc}"[:2000]
        )

    def _refuse(self, msg: Any) -> Any:
        def refuse(event: UsageEvent, index: int, reason: str, error: str) -> None:
            self.dead_letters.send(self.topics.usage, msg, reason, f"event {index}: {error}")

        return refuse

    async def _caphits_agent(self, stream: Any) -> None:
        self._events()
        await self.catalog_reader.ready.wait()
        s = stream.noack()
        topic = self.topics.caphits
        records = self.metrics.records.labels(topic=topic)
        async for event in s.events():
            if self.stopping or not self._owner:
                continue
            msg = event.message
            if not await self._in_order(msg):
                continue
            records.inc()
            self._records_seen += 1
            part = self._partition(msg.partition)
            try:
                self._apply_cap_hit(part, msg)
            except Exception as exc:  # a defect must not stop the stream: dead-letter it
                self._poisoned(topic, msg, exc)
            self._acks.append((s, event))
            if self.outbox.queue:
                await self.drain()
            await asyncio.sleep(0)

    def _apply_cap_hit(self, part: PartitionState, msg: Any) -> None:
        topic = self.topics.caphits
        try:
            hit: CapHit = decode_cap_hit(
                msg.value, self.options.max_record_bytes, self._latest(msg, wall_ms())
            )
        except DecodeError as exc:
            self.dead_letters.send(topic, msg, exc.reason, str(exc))
            return
        p = msg.partition
        home = self.decoder.home_of(hit.account_id)
        if home != p:  # keyed by something else: its feed row lives on the account's partition
            self.outbox.queue.append(
                Outgoing(topic, hit.account_id.encode(), msg.value, None, p, to_partition=home)
            )
            self.metrics.rerouted.inc()
            return
        row = part.apply_cap_hit(hit, functools.partial(self.feed.get, p))
        self.outbox.add_feed_row(p, row)
        self.metrics.decisions.labels(kind="feed_row").inc()

    async def _in_order(self, msg: Any) -> bool:
        """True if ``msg`` is the next record of its partition in this ownership.

        Faust resumes the partitions of a new assignment before it seeks them to the
        committed offsets, so records from wherever the fetcher stood can arrive first, and
        the same and earlier ones again after the seek (Faust itself then drops records
        below the highest offset it handed over). Applying a later record first would make
        the earlier ones look like replays to the core's watermarks (dropped: an
        undercount), and a commit after it would skip them. So each partition is taken
        strictly in order from its committed offset: an earlier offset was processed
        already (skipped); a later one means records in between were not handed over: it is
        skipped and the partition sought back to the expected offset (once per offset; the
        records already buffered drain meanwhile). The usage and cap-hit topics are written
        without transactions, so their offsets have no holes; only retention can remove the
        expected offset, and then the partition's first offset is expected instead.
        """
        key = (msg.topic, msg.partition)
        expected = self._expected.get(key)
        offset = msg.offset
        if expected is not None and offset != expected:
            if offset < expected:
                return False
            if self._sought.get(key) != expected:
                self._sought[key] = expected
                consumer = self.app.consumer
                tp = faust.types.TP(msg.topic, msg.partition)
                earliest = (await consumer.earliest_offsets(tp)).get(tp)
                if earliest is not None and expected < earliest:
                    self._expected[key] = expected = earliest
                if offset != expected:
                    log.info("%s[%d]: offset %d before %d: sought back", *key, offset, expected)
                    await consumer.seek(tp, expected)
                    return False
            else:
                return False
        self._expected[key] = offset + 1
        return True

    def _partition(self, p: int) -> PartitionState:
        part = self.partitions.get(p)
        if part is None:
            part = self._load(p)
        return part

    def _emit(self, partition: int) -> Any:
        def emit(effects: Effects, origin_ms: int | None) -> None:
            self.outbox.add(partition, effects, origin_ms)

        return emit

    # -- sending -----------------------------------------------------------------------------

    async def drain(self) -> None:
        """Hand every queued record to the producer, in order (one drainer at a time)."""
        self._events()
        assert self._drain_lock is not None
        queue = self.outbox.queue
        if not queue:
            return
        async with self._drain_lock:
            if not self._gated:
                # Control states, notifications and feed rows are state: a worker whose
                # membership may have lapsed never sends them (dead letters of the policy
                # reader may go out before the first assignment).
                client = self.app.producer._ensure_producer().client
                gate_client(client, self._may_write, self._state_topics)
                self._gated = True
            send = self.app.producer.send
            observe = self.metrics.latency.observe
            states = self.metrics.decisions.labels(kind="state")
            notes = self.metrics.decisions.labels(kind="notification")
            live = not self.options.event_time
            while queue:
                out = queue[0]
                if out.topic in self._state_topics and not self._may_write():
                    self._lapse("membership lease lapsed before a decision went out")
                    return
                try:
                    fut = await send(out.topic, out.key, out.value, out.to_partition, None, None)
                except Exception as exc:
                    # Not sent: nothing read so far may be acked (flush checks _failed); the
                    # worker stops and replays from its last commit.
                    self._failed = exc
                    log.exception("producing to %s failed; the worker stops", out.topic)
                    await self.app.crash(exc)
                    raise
                queue.popleft()
                self._sends.append(fut)
                if out.topic == self.topics.control:
                    states.inc()
                    if live and out.origin_ms is not None:
                        fut.add_done_callback(functools.partial(_observe, observe, out.origin_ms))
                elif out.topic == self.topics.notifications:
                    notes.inc()
                elif out.dead_letter is not None:
                    fut.add_done_callback(
                        functools.partial(self.dead_letters.acknowledged, out.dead_letter)
                    )

    # -- flushing ----------------------------------------------------------------------------

    async def _flusher(self) -> None:
        self._events()
        assert self._flush_now is not None
        interval = self.options.flush_interval_s
        wait = interval
        while True:
            # Sleep `wait`, but flush early once the stream goes idle: a flush then competes
            # with nothing, and the offsets of the last records get committed.
            deadline = time.monotonic() + wait
            seen = self._records_seen
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_now.wait(), min(left, interval))
                if self._flush_now.is_set() or (self._records_seen == seen and self._acks):
                    break
                seen = self._records_seen
            self._flush_now.clear()
            try:
                busy = await self.flush(paced=True)
            except Exception as exc:  # a send that failed for good: restart from the changelog
                log.exception("flush failed; the worker stops and replays from its last commit")
                self._failed = exc
                await self.app.crash(exc)
                return
            # Keep flushing to at most flush_share of the time: the cost of a flush grows with
            # the number of distinct dirty values, not with the events behind them.
            wait = max(interval, busy / self.options.flush_share - busy)

    async def flush(self, partitions: Iterable[int] | None = None, *, paced: bool = False) -> float:
        """Write dirty state (RocksDB + changelog), wait until the broker has it and every
        decision derived from the records read so far, then ack those records.

        ``paced``: serialise in slices of ``_SLICE_S`` with ``_PAUSE_S`` pauses, so records
        keep flowing with low latency while a large flush runs in the background. Returns
        the time spent working (not pausing), in seconds.
        """
        self._events()
        assert self._flush_lock is not None
        async with self._flush_lock:
            if not self._may_write():
                self._lapse("membership lease lapsed before a flush")
                return 0.0
            pending: list[asyncio.Future[Any]] = []
            try:
                return await self._flush(partitions, paced, pending)
            except _LapsedError:
                self._lapse("membership lease lapsed during a flush")
                return 0.0
            except Exception:
                if self._may_write():
                    raise
                # Refused by the gate (or failed) after the lease lapsed: not a failure of
                # the broker; the next owner has (or will have) the partitions.
                self._lapse("membership lease lapsed during a flush")
                return 0.0
            finally:
                for fut in pending:  # refused or not: nobody waits for them any more
                    fut.add_done_callback(_consume)

    async def _flush(
        self, partitions: Iterable[int] | None, paced: bool, futures: list[asyncio.Future[Any]]
    ) -> float:
        started = time.perf_counter()
        acks, self._acks = self._acks, []
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
        await self.drain()
        futures.extend(self._sends)
        self._sends = []
        producer = await self._changelog_producer()
        written = 0
        paused = 0.0
        slice_end = time.perf_counter() + _SLICE_S
        for p in targets:
            part = self.partitions.get(p)
            if part is None:
                continue
            if not self._may_write():
                raise _LapsedError
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
                if n == len(dirty) or (now := time.perf_counter()) >= slice_end:
                    if not self._may_write():  # a pause between two slices
                        raise _LapsedError
                    futures.append(await self.bots.write(p, bot_values, producer))
                    futures.append(await self.accounts.write(p, account_values, producer))
                    written += len(account_values) + len(bot_values)
                    account_values, bot_values = [], []
                    if n < len(dirty) and paced:
                        await asyncio.sleep(_PAUSE_S)
                        paused += time.perf_counter() - now
                    elif n < len(dirty):
                        await asyncio.sleep(0)
                    slice_end = time.perf_counter() + _SLICE_S
            if p in clocks:
                if not self._may_write():
                    raise _LapsedError
                clock = [(CLOCK_KEY, str(clocks[p]).encode())]
                futures.append(await self.accounts.write(p, clock, producer))
            if part.epoch_dirty:
                part.epoch_dirty = False
                epoch = [(EPOCH_KEY, str(part.epoch).encode())]
                futures.append(await self.accounts.write(p, epoch, producer))
        busy = time.perf_counter() - started - paused
        if futures:
            await asyncio.gather(*futures)
        futures.clear()
        if self._failed is not None:  # a record derived from these was never sent
            raise RuntimeError("a send failed; nothing more is acked") from self._failed
        if not self._may_write():
            raise _LapsedError  # everything landed, but the next owner replays these records
        for stream, event in acks:
            await stream.ack(event)
        await self._commit(acks)
        if written or acks:
            self.metrics.flushes.inc()
            self.metrics.flushed_values.inc(written)
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
        self._update_lag()
        return busy

    async def _commit(self, acks: list[tuple[Any, Any]]) -> None:
        """Commit, per partition, the offset after the last record just acked.

        Every record of a partition is processed in order and acked by a flush, so once a
        flush has acked offset ``n`` every record up to ``n`` is durable. Faust's own
        bookkeeping of acked offsets is not used: after a takeover its read position is set
        back by the seek to the committed offsets while records after it were already
        handed over, so it records the range in between as a "gap" and counts it as acked
        whether or not an agent processed it (a commit past records nobody processed); and
        those offsets, acked again, appear twice in its list, so its commits then advance
        one offset per commit (measured: a new owner's commits ~100 records behind for over
        a minute while its lag was 0).
        """
        offsets: dict[Any, int] = {}
        for _, event in acks:
            msg = event.message
            tp = faust.types.TP(msg.topic, msg.partition)
            if msg.offset + 1 > offsets.get(tp, -1):
                offsets[tp] = msg.offset + 1
        if not offsets or not self._may_write():
            return
        consumer = self.app.consumer
        await consumer._thread.commit(offsets)
        committed = consumer._committed_offset  # so Faust's own commits never go back
        for tp, offset in offsets.items():
            if (committed.get(tp) or -1) < offset:
                committed[tp] = offset

    async def _changelog_producer(self) -> Any:
        """The producer of the tables' changelogs (started on first use, stopped at shutdown)."""
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(
                **self.settings.aiokafka_config(),
                client_id="capstream-processors-changelog",
                acks="all",
                enable_idempotence=True,
                max_batch_size=128 * 1024,  # a flush's values in few, modest requests
                max_request_size=1024 * 1024,
                # Usage states are mostly small integers and zeros: zstd shrinks a flush ~25x
                # at ~870 MB/s, so the broker (often on the same machine) writes and
                # replicates a fraction of the bytes, and recovery reads a fraction too.
                # (aiokafka's lz4 is level 9: 51 MB/s, a tenth of the worker's CPU here.)
                compression_type="zstd",
            )
            # Every changelog write is state: refused once the membership may have lapsed,
            # and after the ownership it was made in (a batch it still holds then is stale).
            epoch = self._epoch
            gate_client(producer.client, lambda: self._may_write() and self._epoch == epoch, None)
            await producer.start()
            self._producer = producer
        return self._producer

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the worker (a send or a flush that failed for good)."""
        return self._failed

    def _update_lag(self) -> None:
        consumer = self.app.consumer
        for p, offset in self._positions.items():
            try:
                tp = faust.types.TP(self.topics.usage, p)
                high = consumer.highwater(tp)
            except Exception:  # not assigned any more, or not started
                continue
            if high is not None:
                self.metrics.lag.labels(partition=str(p)).set(max(0, high - offset - 1))
        self.metrics.accounts.set(sum(len(p.accounts) for p in self.partitions.values()))

    # -- the clock ---------------------------------------------------------------------------

    async def _timers(self) -> None:
        """Wall-clock mode: run ``expire`` at the earliest deadline of any held account."""
        self._events()
        assert self._wake is not None
        while True:
            now = wall_ms()
            due = min(
                (d for p in self.partitions.values() if (d := p.next_deadline) is not None),
                default=None,
            )
            regranted = self.catalog.refresh(now)  # a credit grant's period ended or expired
            if regranted and not self.stopping:
                self._changed(regranted)
                await self.drain()
            if due is not None and due <= now and not self.stopping:
                ran = sum(p.tick(now) for p in list(self.partitions.values()))
                self.metrics.timers.inc(ran)
                await self.drain()
                continue
            self._timer_due = due if due is not None else 1 << 62
            wait = 1.0 if due is None else min(1.0, (due - now) / 1000)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    # -- policies and settings ---------------------------------------------------------------

    def _changed(self, accounts: set[str]) -> None:
        """Policies or settings of ``accounts`` changed: re-decide them where held."""
        now = wall_ms()
        for part in self.partitions.values():
            for account_id in accounts:
                part.reevaluate(account_id, now)
        if self._wake is not None:
            self._wake.set()

    async def _read_catalog(self) -> None:
        try:
            await self.catalog_reader.run(self.drain)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the policies/tenants reader failed; the worker stops")
            self._failed = exc
            await self.app.crash(exc)

    # -- rebalancing -------------------------------------------------------------------------

    def _load(self, p: int) -> PartitionState:
        part = PartitionState(
            p, self.catalog, self._emit(p),
            event_time=self.options.event_time, recent_ids=self.options.recent_event_ids,
        )  # fmt: skip
        self.partitions[p] = part
        bots = (value for _, value in self.bots.items(p))
        current = part.load(self.accounts.items(p), bots, wall_ms())
        if self.options.republish_on_load and current:
            self.outbox.add_states(p, current)
        log.info("partition %d: %d accounts loaded", p, len(part.accounts))
        return part

    async def _on_recovered(self) -> None:
        """Tables recovered: load every usage partition this worker now owns from them."""
        self._events()
        await self.catalog_reader.ready.wait()  # states are re-decided with the real policies
        # Every revoke (and lapse) dropped the partitions' states: what is loaded here is
        # what the changelogs hold now, whoever wrote it.
        if not self._owner:
            # A decision of a former ownership still queued in the producer (its broker
            # unreachable since) is refused now, not sent once this ownership begins.
            await self.app.producer.flush()
            self._epoch += 1
            # Each partition is taken from its committed offset on (see ``_in_order``).
            consumer = self.app.consumer
            await consumer.perform_seek()
            self._expected.clear()
            self._sought.clear()
            for tp in consumer.assignment():
                committed = consumer._committed_offset.get(tp)
                if committed is not None:
                    self._expected[(tp.topic, tp.partition)] = committed
        loaded = []
        for tp in self.app.consumer.assignment():
            if tp.topic == self.topics.usage and tp.partition not in self.partitions:
                loaded.append(self._load(tp.partition))
        # Owner only now: loading large partitions may hold the loop for a while, which the
        # watchdog must not take for a freeze.
        self._owner = True
        self._owned_since = time.monotonic()
        self.metrics.partitions.set(len(self.partitions))
        await self._write_epochs(loaded)
        await self.drain()

    async def _write_epochs(self, parts: list[PartitionState]) -> None:
        """Make each loaded partition's epoch durable before any of its decisions goes out:
        a next owner then starts above every version this one publishes."""
        if not parts or not self._may_write():
            return
        producer = await self._changelog_producer()
        futures = []
        for part in parts:
            part.epoch_dirty = False
            epoch = [(EPOCH_KEY, str(part.epoch).encode())]
            futures.append(await self.accounts.write(part.partition, epoch, producer))
        await asyncio.gather(*futures)

    async def _on_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """A rebalance started: write and ack everything processed so far (only while the
        membership is certainly valid), then drop every partition's state."""
        if not self._may_write():
            self._lapse("revoked after the membership lease lapsed", rejoin=False)
            return
        flushed = False
        try:
            await self.flush()  # commits what it acks
            flushed = self._owner
        except Exception:
            log.exception("flush on revoke failed; the next owner replays from the last commit")
        # A flush that did not complete may have put values into the local stores that the
        # changelog does not have: those stores are rebuilt from the changelog.
        self._disown(wipe=not flushed)

    async def _on_assigned(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Drop the in-memory state of usage partitions that went to another worker (the
        revoke dropped them all already: rebalances revoke every partition first)."""
        assigned = args[0] if args else kwargs.get("assigned", ())
        mine = {tp.partition for tp in assigned if tp.topic == self.topics.usage}
        for p in list(self.partitions):
            if p not in mine:
                del self.partitions[p]
                self._positions.pop(p, None)
                log.info("partition %d: revoked, state dropped", p)
        self.metrics.partitions.set(len(self.partitions))

    def _may_write(self) -> bool:
        """True while this worker owns its partitions and surely is still a group member."""
        return self._owner and self.membership.valid()

    def _lapse(self, reason: str, *, rejoin: bool = True) -> None:
        """The membership may have lapsed: treat it as a revoke without the flush.

        Drop every partition's state, the records read since the last flush (not acked: the
        next owner reads them again) and what waits to be sent; wipe the local stores of
        those partitions (a flush may have put values there that never reached the
        changelog); rejoin the group, whose next assignment recovers from the changelogs.
        """
        was_owner = self._owner
        if was_owner:
            log.warning("%s: dropping every partition's state and rejoining the group", reason)
            self.metrics.lapses.inc()
        self._disown(wipe=True)
        if was_owner and rejoin:
            self.membership.rejoin()

    def _disown(self, *, wipe: bool) -> None:
        """End the ownership: drop the partitions' states; the changelog producer of this
        ownership sends nothing more (the next one gets a new producer)."""
        self._owner = False
        self._epoch += 1
        self._drop(wipe=wipe)
        self.metrics.partitions.set(0)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            self._stopping_producer = asyncio.ensure_future(producer.stop())

    def _drop(self, *, wipe: bool) -> None:
        for p in list(self.partitions):
            if wipe:
                for store in (self.accounts, self.bots, self.feed):
                    store.forget(p)
            log.info("partition %d: state dropped%s", p, " and wiped" if wipe else "")
        self.partitions.clear()
        self._positions.clear()
        self._acks.clear()
        self.outbox.queue.clear()
        for fut in self._sends:  # refused or not, nobody waits for them now
            fut.add_done_callback(_consume)
        self._sends.clear()

    async def _watchdog(self) -> None:
        """Treat a lapse of the membership lease, or a stall of the event loop longer than
        the lease's span, as a revoke at once (the writes are refused anyway)."""
        m = self.membership
        last = time.monotonic()
        while True:
            await asyncio.sleep(_WATCH_S)
            now = time.monotonic()
            stalled, since, last = now - last - _WATCH_S, last, now
            if not self._owner or since < self._owned_since:
                continue
            if stalled > m.session_timeout_s - m.margin_s:
                self._lapse(f"the event loop stalled for {stalled:.1f} s")
            elif not m.valid():
                self._lapse("no heartbeat answered within the session timeout")

    async def shutdown(self) -> None:
        """Stop taking records, write and ack what was processed, commit."""
        self.stopping = True
        try:
            if self._may_write():
                await self.flush()  # commits what it acks
        except Exception:
            log.exception("final flush failed; the restart replays from the last commit")
        if self._producer is not None:
            await self._producer.stop()


FETCH_MAX_WAIT_MS = 10
FETCH_MIN_BYTES = 64 * 1024


def _short_fetch_wait() -> None:
    """Make Faust's worker consumer fetch at most every ``FETCH_MAX_WAIT_MS`` (Faust
    hard-codes 1,500 ms; aiokafka keeps one fetch request per broker in flight, and records
    arriving meanwhile wait: measured 0.5-1.5 s of added event-to-decision latency at
    1,000-5,000 events/s) but not as soon as one byte is there: with a minimum of
    ``FETCH_MIN_BYTES`` the broker gathers the records of a few milliseconds per response.
    Answering each small record with its own fetch cost the worker ~40 % of its CPU at 5,000
    events/s in small records (request encoding, socket writes, thread wake-ups)."""
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    if getattr(thread, "_capstream_fetch_wait", False):
        return
    create = thread._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # both read by consumer.start()
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        return consumer

    setattr(thread, "_create_worker_consumer", create_worker_consumer)  # noqa: B010
    setattr(thread, "_capstream_fetch_wait", True)  # noqa: B010


def _nothing_to_commit(tps: Any) -> dict[Any, int]:
    return {}


def _consume(fut: Any) -> None:
    if not fut.cancelled():
        fut.exception()


def _observe(observe: Callable[[float], None], origin_ms: int, _fut: Any) -> None:
    observe(max(0.0, time.time() - origin_ms / 1000))


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    conf: dict[str, Any] = settings.aiokafka_config()
    if settings.sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=conf.get("sasl_plain_password"),
            mechanism=settings.sasl_mechanism,
            ssl_context=conf.get("ssl_context"),
        )
    return faust.SSLCredentials(conf["ssl_context"])
