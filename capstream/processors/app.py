"""The Faust app: the wiring of one worker, its usage and cap-hit agents, and rebalancing.

Thin by rule: decode -> core (through :class:`PartitionState`) -> send. The parts (see the
README's layout): ``records``, ``flusher``, ``sender``, ``timers``, ``ordering``,
``faust_app``. Offsets are acked only by the flusher, after the state and every record
derived from the acked messages are acknowledged by the broker; replays are harmless.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, cast

from capstream.core import Effects
from capstream.processors import faust_app
from capstream.processors.catalog import Catalog
from capstream.processors.catalog_reader import CatalogReader
from capstream.processors.dlq import DeadLetters
from capstream.processors.fencing import Membership, watch
from capstream.processors.flusher import Flusher, changelog_producer
from capstream.processors.metrics import Metrics, update_lag
from capstream.processors.options import WorkerOptions
from capstream.processors.ordering import InOrder
from capstream.processors.outbox import Outbox
from capstream.processors.partition import PartitionState
from capstream.processors.records import RecordHandler
from capstream.processors.sender import BACKLOG, Sender
from capstream.processors.tables import TableStore
from capstream.processors.timers import Timers, wall_ms, watchdog
from capstream.streams.settings import Settings
from capstream.streams.topics import CHANGELOG_CONFIG, PROCESSOR_TABLES, Topics
from capstream.streams.usage_decode import UsageDecoder

log = logging.getLogger(__name__)
_YIELD_S = 0.005
"""The usage agent yields to the event loop at least this often."""


class Processors:
    """One worker's processors: build with settings, then run with :func:`run_worker`."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.topics = Topics(settings.topic_prefix)
        self.metrics = Metrics()
        self.catalog = Catalog()
        self.outbox = Outbox(self.topics)
        self.dead_letters = DeadLetters(self.outbox, self.metrics)
        self.decoder = UsageDecoder(options.max_record_bytes, settings.usage_partitions)
        self.partitions: dict[int, PartitionState] = {}
        self.stopping = False
        self._positions: dict[int, int] = {}
        self._failed: BaseException | None = None
        self._started = False
        self._catalog_task: asyncio.Future[None] | None = None
        self._yielded = 0.0
        self._record_done = 0.0
        self.membership = Membership(
            options.app_id(settings.topic_prefix), options.session_timeout_s
        )
        watch(self.membership)
        self._owner = False
        """True from the recovery of an assignment until its revoke or a lapse of the
        membership: only then is state processed and written (see ``fencing``)."""
        self._owned_since = 0.0
        self.app = faust_app.make_app(settings, options)
        self.in_order = InOrder(self.app, (self.topics.usage, self.topics.caphits))
        self.sender = Sender(
            self.app, self.topics, self.outbox, self.dead_letters, self.metrics, self,
            live=not options.event_time,
        )  # fmt: skip
        self.timers = Timers(
            self.partitions, self.metrics, self.drain, lambda: self.stopping, self._regrant
        )
        self._wire()
        self.records = RecordHandler(
            self.topics, options, self.decoder, self.outbox, self.dead_letters, self.metrics,
            self.feed.get,
        )  # fmt: skip
        self.flusher = Flusher(
            options, self.metrics, self.partitions, (self.accounts, self.bots, self.feed),
            self.sender, self, self._commit,
            functools.partial(changelog_producer, settings.aiokafka_config()),
            lambda: update_lag(
                self.metrics, self.app.consumer, self.topics.usage, self._positions, self.partitions
            ),
        )  # fmt: skip
        self.catalog_reader = CatalogReader(
            settings, self.catalog, self.metrics, self._changed, self.dead_letters.send_raw
        )

    # -- wiring ------------------------------------------------------------------------------

    def _wire(self) -> None:
        app, n = self.app, self.settings.usage_partitions
        config, rocksdb = CHANGELOG_CONFIG, self.options.rocksdb_options
        table = functools.partial(
            app.Table, key_type=bytes, value_type=bytes, partitions=n, extra_topic_configs=config
        )
        # RocksDB options: a new dict per table (Faust's store pops keys from it).
        tables = {name: table(name, options=rocksdb()) for name in PROCESSOR_TABLES}
        self.accounts = TableStore(tables["accounts"])
        self.bots = TableStore(tables["bots"])
        self.feed = TableStore(tables["feed"])
        tables["bots"].on_recover(self._on_recovered)
        for name in (self.topics.usage, self.topics.caphits):
            topic = app.topic(name, partitions=n, key_serializer="raw", value_serializer="raw")
            agent = self._usage_agent if name == self.topics.usage else self._caphits_agent
            app.agent(topic, name="usage" if name == self.topics.usage else "caphits")(agent)
        app.task(self._flusher)
        app.task(self._sender)
        app.task(self._watchdog)
        if not self.options.event_time:
            app.task(self._timers)
        app.on_partitions_revoked.connect(cast(Any, self._on_revoked))
        app.on_partitions_assigned.connect(cast(Any, self._on_assigned))

    def _start(self) -> None:
        """Once the worker runs: own the commits, start reading policies and settings."""
        if not self._started:
            faust_app.own_commits(self.app.consumer)
            self._started = True
        if self._catalog_task is None:
            # Started by whichever comes first (an agent, or the tables' recovery callback,
            # which Faust awaits before it starts app tasks): both wait for it.
            self._catalog_task = asyncio.ensure_future(self._read_catalog())

    async def _flusher(self) -> None:
        self._start()
        await self.flusher.run()

    async def _sender(self) -> None:
        self._start()
        await self.sender.run()

    async def _timers(self) -> None:
        self._start()
        await self.timers.run()

    async def _watchdog(self) -> None:
        await watchdog(
            self.membership, lambda: self._owned_since if self._owner else None, self.lapse
        )

    async def drain(self) -> None:
        """Hand every queued record to the producer, in order (one drainer at a time)."""
        self._start()
        await self.sender.drain()

    async def flush(self, partitions: Any = None, *, paced: bool = False) -> float:
        """Write dirty state, wait until it and every derived record are durable, then ack
        and commit the records read so far (:meth:`Flusher.flush`)."""
        self._start()
        return await self.flusher.flush(partitions, paced=paced)

    async def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        await faust_app.commit(self.app.consumer, offsets)

    # -- agents ------------------------------------------------------------------------------

    async def _usage_agent(self, stream: Any) -> None:
        self._start()
        await self.catalog_reader.ready.wait()
        s = stream.noack()
        topic = self.topics.usage
        records = self.metrics.records.labels(topic=topic)
        record_delay = self.metrics.record_delay.observe
        flusher, timers, sender, queue = self.flusher, self.timers, self.sender, self.outbox.queue
        handle = self.records.usage
        async for event in s.events():
            if self.stopping or not self._owner:
                continue  # not acked: read again after the restart (or by the next owner)
            started = time.perf_counter()
            if started - self._record_done > 0.0005:
                self._yielded = started  # the stream suspended in between: others ran
            msg = event.message
            part = self.partitions.get(msg.partition)  # none: not restored yet (read again)
            if part is None or not await self.in_order.check(msg):
                continue
            records.inc()
            flusher.records_seen += 1
            now = wall_ms()
            record_delay(max(0.0, now / 1000 - msg.timestamp))
            try:
                handle(part, msg, now)
            except Exception as exc:  # a defect must not stop the stream: dead-letter it
                self.records.poisoned(topic, msg, exc)
            self._positions[msg.partition] = msg.offset
            flusher.processed(s, event)
            due = part.next_deadline
            if due is not None and due < timers.due:
                timers.poke()
            if queue:  # the drain task sends it; the agent goes on
                if len(queue) < BACKLOG:
                    sender.wake()
                else:
                    await self.drain()
            if part.applied >= self.options.flush_events:
                flusher.soon()
            # With a backlog the stream hands over records without suspending: let the
            # flusher, the timers and the consumer run at least every few milliseconds.
            self._record_done = time.perf_counter()
            if self._record_done - self._yielded >= _YIELD_S:
                await asyncio.sleep(0)
                self._yielded = self._record_done = time.perf_counter()

    async def _caphits_agent(self, stream: Any) -> None:
        self._start()
        await self.catalog_reader.ready.wait()
        s = stream.noack()
        topic = self.topics.caphits
        records = self.metrics.records.labels(topic=topic)
        async for event in s.events():
            if self.stopping or not self._owner:
                continue
            msg = event.message
            part = self.partitions.get(msg.partition)
            if part is None or not await self.in_order.check(msg):
                continue
            records.inc()
            self.flusher.records_seen += 1
            try:
                self.records.cap_hit(part, msg, wall_ms())
            except Exception as exc:  # a defect must not stop the stream: dead-letter it
                self.records.poisoned(topic, msg, exc)
            self.flusher.processed(s, event)
            if self.outbox.queue:
                self.sender.wake()
            await asyncio.sleep(0)

    def _emit(self, partition: int) -> Any:
        def emit(effects: Effects, origin_ms: int | None) -> None:
            self.outbox.add(partition, effects, origin_ms)

        return emit

    # -- the fence (see ``fencing``) ----------------------------------------------------------

    def may_write(self) -> bool:
        """True while this worker owns its partitions and surely is still a group member."""
        return self._owner and self.membership.valid()

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the worker (a send or a flush that failed for good)."""
        return self._failed

    async def fail(self, exc: BaseException) -> None:
        """Stop the worker on ``exc``: nothing read after it is acked; the restart replays."""
        self._failed = exc
        await self.app.crash(exc)

    def lapse(self, reason: str, *, rejoin: bool = True) -> None:
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

    # -- policies and settings ---------------------------------------------------------------

    def _regrant(self, now: int) -> bool:
        """A credit grant's period ended or it expired: re-decide its accounts."""
        regranted = self.catalog.refresh(now)
        if regranted:
            self._changed(regranted)
        return bool(regranted)

    def _changed(self, accounts: set[str]) -> None:
        """Policies or settings of ``accounts`` changed: re-decide them where held."""
        now = wall_ms()
        for part in self.partitions.values():
            for account_id in accounts:
                part.reevaluate(account_id, now)
        self.timers.poke()

    async def _read_catalog(self) -> None:
        try:
            await self.catalog_reader.run(self.drain)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the policies/tenants reader failed; the worker stops")
            await self.fail(exc)

    # -- rebalancing -------------------------------------------------------------------------

    def _load(self, p: int) -> PartitionState:
        part = PartitionState(
            p, self.catalog, self._emit(p),
            event_time=self.options.event_time, recent_ids=self.options.recent_event_ids,
            scoped_values=self.options.scoped_values,
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
        self._start()
        await self.catalog_reader.ready.wait()  # states are re-decided with the real policies
        if not faust_app.restored(self.app, self.topics.usage):
            return
        # Every revoke (and lapse) dropped the partitions' states: what is loaded here is
        # what the changelogs hold now, whoever wrote it.
        if not self._owner:
            # A decision of a former ownership still queued in the producer (its broker
            # unreachable since) is refused now, not sent once this ownership begins.
            await self.app.producer.flush()
            self.flusher.new_ownership()
            # Each partition is taken from its committed offset on (see ``ordering``).
            await self.app.consumer.perform_seek()
            await self.in_order.restart()
            if not faust_app.restored(self.app, self.topics.usage):
                return  # overtaken while it sought
        loaded = []
        for tp in self.app.consumer.assignment():
            if tp.topic == self.topics.usage and tp.partition not in self.partitions:
                loaded.append(self._load(tp.partition))
        # Owner only now: loading large partitions may hold the loop for a while, which the
        # watchdog must not take for a freeze.
        self._owner = True
        self._owned_since = time.monotonic()
        self.metrics.partitions.set(len(self.partitions))
        await self.flusher.write_epochs(loaded)
        await self.drain()

    async def _on_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """A rebalance started: write and ack everything processed so far (only while the
        membership is certainly valid), then drop every partition's state."""
        if not self.may_write():
            self.lapse("revoked after the membership lease lapsed", rejoin=False)
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

    def _disown(self, *, wipe: bool) -> None:
        """End the ownership: drop the partitions' states, the records read since the last
        flush and what waits to be sent; this ownership's changelog producer sends nothing
        more (the next one gets a new producer)."""
        self._owner = False
        for p in list(self.partitions):
            if wipe:
                for store in (self.accounts, self.bots, self.feed):
                    store.forget(p)
            log.info("partition %d: state dropped%s", p, " and wiped" if wipe else "")
        self.partitions.clear()
        self._positions.clear()
        self.flusher.drop()
        self.sender.drop()
        self.metrics.partitions.set(0)

    async def shutdown(self) -> None:
        """Stop taking records, write and ack what was processed, commit."""
        self.stopping = True
        try:
            if self.may_write():
                await self.flush()  # commits what it acks
        except Exception:
            log.exception("final flush failed; the restart replays from the last commit")
        await self.flusher.close()
