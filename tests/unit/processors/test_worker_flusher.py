"""The worker's flusher with fakes for the tables, the sender, the commit and the lease: a
record is acked and committed only once its state and every record derived from it are
durable; a failed send or a lapsed lease acks nothing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from capstream.processors.flusher import Flusher, Offsets
from capstream.processors.metrics import Metrics
from capstream.processors.options import WorkerOptions
from capstream.processors.partition import CLOCK_KEY, EPOCH_KEY, PartitionState


@dataclass
class FakePartition:
    """The parts of :class:`PartitionState` a flush reads: dirty accounts, clock, epoch."""

    partition: int
    dirty: list[str] = field(default_factory=list)
    clock_ms: int = 0
    clock_dirty: bool = False
    epoch: int = 1
    epoch_dirty: bool = False

    def take_feed(self) -> list[tuple[bytes, bytes, Any]]:
        return []

    def take_dirty(self) -> list[str]:
        dirty, self.dirty = self.dirty, []
        return dirty

    def serialize(self, account_id: str) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
        return f"state of {account_id}".encode(), [(f"{account_id}/bot".encode(), b"bot")]


class FakeStore:
    """A table whose changelog acknowledges a write only when the test says so."""

    def __init__(self) -> None:
        self.written: dict[int, dict[bytes, bytes]] = {}
        self.unacked: list[asyncio.Future[None]] = []
        self.hold = False

    async def write(self, partition: int, values: list[tuple[bytes, bytes]], producer: Any) -> Any:
        assert producer.started
        self.written.setdefault(partition, {}).update(values)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.unacked.append(fut)
        else:
            fut.set_result(None)
        return fut

    def release(self) -> None:
        for fut in self.unacked:
            fut.set_result(None)
        self.unacked.clear()


class FakeSender:
    """The outbox's drainer: what it sent is acknowledged when the test says so."""

    def __init__(self) -> None:
        self.sends: list[asyncio.Future[Any]] = []
        self.drained = 0

    async def drain(self) -> None:
        self.drained += 1

    def take_sends(self) -> list[asyncio.Future[Any]]:
        sends, self.sends = self.sends, []
        return sends


class FakeFence:
    def __init__(self) -> None:
        self.valid = True
        self.lapses: list[str] = []
        self.failure: BaseException | None = None
        self.failed: list[BaseException] = []

    def may_write(self) -> bool:
        return self.valid

    def lapse(self, reason: str) -> None:
        self.lapses.append(reason)

    async def fail(self, exc: BaseException) -> None:
        self.failed.append(exc)


class FakeProducer:
    def __init__(self, may_send: Callable[[], bool]) -> None:
        self.may_send = may_send
        self.started = True

    async def stop(self) -> None:
        self.started = False


class FakeStream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.offset)


def event(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


class Rig:
    def __init__(self, *parts: FakePartition, **options: Any) -> None:
        self.partitions = {p.partition: cast(PartitionState, p) for p in parts}
        self.accounts, self.bots, self.feed = FakeStore(), FakeStore(), FakeStore()
        self.sender = FakeSender()
        self.fence = FakeFence()
        self.commits: list[Offsets] = []
        self.producers: list[FakeProducer] = []
        self.stream = FakeStream()
        self.flusher = Flusher(
            WorkerOptions(**options), Metrics(), self.partitions,
            (self.accounts, self.bots, self.feed), self.sender, self.fence,
            self._commit, self._new_producer,
        )  # fmt: skip

    async def _commit(self, offsets: Offsets) -> None:
        self.commits.append(dict(offsets))

    async def _new_producer(self, may_send: Callable[[], bool]) -> FakeProducer:
        producer = FakeProducer(may_send)
        self.producers.append(producer)
        return producer

    def read(self, topic: str, partition: int, *offsets: int) -> None:
        for offset in offsets:
            self.flusher.processed(self.stream, event(topic, partition, offset))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_records_are_acked_and_committed_only_once_state_and_decisions_are_durable() -> None:
    async def scenario() -> None:
        rig = Rig(FakePartition(0, dirty=["acct-1"]), FakePartition(1, dirty=["acct-2"]))
        rig.read("t.usage", 0, 10, 11)
        rig.read("t.usage", 1, 5)
        decision: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        rig.sender.sends.append(decision)
        rig.accounts.hold = True
        flush = asyncio.ensure_future(rig.flusher.flush())
        await asyncio.sleep(0.01)
        # The state is in the tables, but neither it nor the decision is acknowledged yet.
        assert rig.accounts.written[0][b"acct-1"] == b"state of acct-1"
        assert rig.bots.written[1][b"acct-2/bot"] == b"bot"
        assert not flush.done() and rig.stream.acked == [] and rig.commits == []
        rig.accounts.release()
        await asyncio.sleep(0.01)
        assert not flush.done() and rig.stream.acked == []  # the decision is still in flight
        decision.set_result(None)
        await flush
        assert rig.stream.acked == [10, 11, 5]
        assert rig.commits == [{("t.usage", 0): 12, ("t.usage", 1): 6}]
        assert rig.sender.drained == 1  # decisions were handed over before waiting on them

    run(scenario())


def test_a_failed_send_acks_nothing_and_the_flush_fails() -> None:
    async def scenario() -> None:
        rig = Rig(FakePartition(0, dirty=["acct-1"]))
        rig.read("t.usage", 0, 3)
        rig.fence.failure = RuntimeError("producing to t.control failed")
        with pytest.raises(RuntimeError, match="nothing more is acked"):
            await rig.flusher.flush()
        assert rig.stream.acked == [] and rig.commits == []

    run(scenario())


def test_a_lease_lapsing_during_the_flush_acks_nothing_and_reports_the_lapse() -> None:
    async def scenario() -> None:
        rig = Rig(FakePartition(0, dirty=["acct-1"]))
        rig.read("t.usage", 0, 3)
        rig.accounts.hold = True
        flush = asyncio.ensure_future(rig.flusher.flush())
        await asyncio.sleep(0.01)
        rig.fence.valid = False  # the member may have been removed meanwhile
        rig.accounts.release()
        assert await flush == 0.0
        assert rig.stream.acked == [] and rig.commits == []
        assert rig.fence.lapses == ["membership lease lapsed during a flush"]

    run(scenario())


def test_no_flush_without_the_lease() -> None:
    async def scenario() -> None:
        rig = Rig(FakePartition(0, dirty=["acct-1"]))
        rig.read("t.usage", 0, 3)
        rig.fence.valid = False
        await rig.flusher.flush()
        assert rig.accounts.written == {} and rig.stream.acked == [] and rig.commits == []
        assert rig.fence.lapses == ["membership lease lapsed before a flush"]

    run(scenario())


def test_the_event_clock_and_the_epoch_go_to_the_accounts_table() -> None:
    async def scenario() -> None:
        part = FakePartition(2, clock_ms=1_790_000_000_123, clock_dirty=True)
        part.epoch, part.epoch_dirty = 4, True
        rig = Rig(part)
        await rig.flusher.flush()
        assert rig.accounts.written[2][CLOCK_KEY] == b"1790000000123"
        assert rig.accounts.written[2][EPOCH_KEY] == b"4"
        assert not part.clock_dirty and not part.epoch_dirty

    run(scenario())


def test_a_changelog_producer_sends_only_in_the_ownership_it_was_made_in() -> None:
    async def scenario() -> None:
        rig = Rig(FakePartition(0, dirty=["acct-1"]))
        await rig.flusher.flush()
        [first] = rig.producers
        assert first.may_send()
        rig.flusher.drop()  # a revoke or a lapse
        await asyncio.sleep(0)
        assert not first.may_send() and not first.started
        rig.partitions[0].dirty.append("acct-1")  # type: ignore[attr-defined]
        await rig.flusher.flush()
        assert len(rig.producers) == 2 and rig.producers[1].may_send()
        rig.fence.valid = False
        assert not rig.producers[1].may_send()  # and never once the lease may have lapsed

    run(scenario())


def test_records_dropped_with_the_ownership_are_never_acked() -> None:
    async def scenario() -> None:
        rig = Rig(FakePartition(0))
        rig.read("t.usage", 0, 7, 8)
        rig.flusher.drop()
        rig.read("t.usage", 0, 9)
        await rig.flusher.flush()
        assert rig.stream.acked == [9]
        assert rig.commits == [{("t.usage", 0): 10}]

    run(scenario())


def test_a_failing_flush_stops_the_worker_through_the_fence() -> None:
    async def scenario() -> None:
        rig = Rig(FakePartition(0, dirty=["acct-1"]), flush_interval_s=0.01)
        rig.read("t.usage", 0, 1)
        rig.fence.failure = RuntimeError("broker gone")
        await asyncio.wait_for(rig.flusher.run(), 5)  # returns once the worker is told to stop
        assert len(rig.fence.failed) == 1 and rig.stream.acked == []

    run(scenario())


COST = 0.0002
"""Seconds of the fake clock per account serialised."""


class SlowPartition(FakePartition):
    """Serialising an account takes ``cost`` seconds of the flusher's clock."""

    def __init__(self, partition: int, dirty: list[str], clock: list[float], cost: float) -> None:
        super().__init__(partition, dirty=dirty)
        self.clock, self.cost = clock, cost
        self.serialised: list[int] = []
        """How many accounts were serialised by each pause (cumulative)."""

    def serialize(self, account_id: str) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
        self.clock[0] += self.cost
        self.serialised.append(len(self.serialised) + 1)
        return super().serialize(account_id)


def paced_rig(
    monkeypatch: pytest.MonkeyPatch, accounts: int, *, records_arrive: bool
) -> tuple[Rig, SlowPartition, list[tuple[float, int]]]:
    """A rig whose flusher reads a fake clock (0.2 ms per account serialised) and whose
    pauses are recorded, with records arriving during each pause or not."""
    from capstream.processors import flusher as flusher_module

    clock = [0.0]
    part = SlowPartition(0, [f"acct-{i}" for i in range(accounts)], clock, COST)
    rig = Rig(part)
    pauses: list[tuple[float, int]] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append((seconds, len(part.serialised)))
        if records_arrive:
            rig.flusher.records_seen += 1  # the agent processed a record meanwhile
        clock[0] += seconds
        await real_sleep(0)

    monkeypatch.setattr(flusher_module.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(flusher_module.asyncio, "sleep", sleep)
    return rig, part, pauses


def test_a_paced_flush_gives_the_stream_most_of_the_loop_while_records_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from capstream.processors.flusher import PAUSE_S, SLICE_S

    rig, _, pauses = paced_rig(monkeypatch, 100, records_arrive=True)
    busy = run(rig.flusher.flush(paced=True))
    assert len(rig.bots.written[0]) == 100
    assert pauses and all(seconds == PAUSE_S for seconds, _ in pauses)
    # At most a slice of serialising (~1 ms: 5 accounts at 0.2 ms) between two pauses...
    done = [0, *[n for _, n in pauses], 100]
    assert max(b - a for a, b in itertools.pairwise(done)) <= SLICE_S / COST + 1
    # ...so the flush worked about a tenth of the time while it ran.
    assert busy <= 0.12 * (busy + PAUSE_S * len(pauses))


def test_a_paced_flush_of_an_idle_stream_does_not_wait_between_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from capstream.processors.flusher import IDLE_S, PAUSE_S

    rig, _, pauses = paced_rig(monkeypatch, 300, records_arrive=False)
    rig.read("t.usage", 0, 41)  # the last record of a backlog: nothing comes after it
    run(rig.flusher.flush(paced=True))
    waits = [seconds for seconds, _ in pauses if seconds]
    # It waits as if records still came for IDLE_S at most, then only yields.
    assert waits and sum(waits) <= IDLE_S + PAUSE_S and len(pauses) > 3 * len(waits)
    assert all(seconds == 0 for seconds, _ in pauses[len(waits) :])
    assert rig.stream.acked == [41] and rig.commits == [{("t.usage", 0): 42}]


def test_a_large_flush_writes_in_chunks_and_acks_only_after_all_are_durable() -> None:
    from capstream.processors.flusher import WRITE_VALUES

    class CountingStore(FakeStore):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        async def write(self, partition: int, values: list[tuple[bytes, bytes]],
                        producer: Any) -> Any:  # fmt: skip
            self.sizes.append(len(values))
            return await super().write(partition, values, producer)

    async def scenario() -> None:
        rig = Rig(FakePartition(0, dirty=[f"acct-{i}" for i in range(1_000)]))
        rig.accounts = rig.flusher.accounts = CountingStore()  # type: ignore[assignment]
        rig.bots = rig.flusher.bots = CountingStore()  # type: ignore[assignment]
        rig.read("t.usage", 0, 5)
        rig.bots.hold = True
        flush = asyncio.ensure_future(rig.flusher.flush(paced=True))
        while len(rig.bots.written.get(0, {})) < 1_000:  # noqa: ASYNC110 - the fakes poll
            await asyncio.sleep(0.001)
        assert not flush.done() and rig.stream.acked == []  # the last chunk is unacknowledged
        rig.bots.release()
        await flush
        assert rig.stream.acked == [5]
        assert len(rig.accounts.written[0]) == 1_000
        accounts, bots = cast(CountingStore, rig.accounts), cast(CountingStore, rig.bots)
        sizes = [a + b for a, b in zip(accounts.sizes, bots.sizes, strict=True)]
        assert sum(sizes) == 2_000 and max(sizes) <= WRITE_VALUES

    run(scenario())
