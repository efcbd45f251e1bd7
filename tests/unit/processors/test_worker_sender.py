"""The outbox's drainer with a fake producer: every queued record is appended to its
partition's open batch in queue order (a key's versions stay in order), one future per
batch waits for the broker, a full batch takes the producer's own send, dead letters count
once acknowledged, and state is never handed over once the lease may have lapsed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from capstream.core import Effects, EnforcementState
from capstream.core.models import ValueBlock
from capstream.processors.dlq import DeadLetters
from capstream.processors.metrics import Metrics
from capstream.processors.outbox import Outbox
from capstream.processors.sender import Sender
from capstream.streams.partitioner import kafka_partitioner
from capstream.streams.topics import Topics
from capstream.streams.value_blocks import decode_value_block

TOPICS = Topics("t")


class FakeBuilder:
    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, timestamp: Any, key: bytes, value: bytes, headers: Any) -> Any:
        if len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return object()


class FakeBatch:
    def __init__(self, room: int) -> None:
        self._builder = FakeBuilder(room)
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class FakeAccumulator:
    """aiokafka's accumulator as the drainer uses it: open batches per topic-partition."""

    def __init__(self, room: int) -> None:
        self.room = room
        self._batches: dict[Any, list[FakeBatch]] = defaultdict(list)
        self._exception = None
        self._closed = False

    def create_builder(self) -> None:
        return None

    def _append_batch(self, builder: Any, tp: Any) -> FakeBatch:
        batch = FakeBatch(self.room)
        self._batches[tp].append(batch)
        return batch


class FakeProducer:
    def __init__(self, room: int = 100) -> None:
        self._message_accumulator = FakeAccumulator(room)
        self._partitioner = kafka_partitioner
        self._metadata = SimpleNamespace(
            partitions_for_topic=lambda topic: {0, 1, 2, 3},
            available_partitions_for_topic=lambda topic: {0, 1, 2, 3},
        )
        self.sent: list[tuple[str, bytes, int]] = []

        async def wait_on_metadata(topic: str) -> None:
            return None

        self.client = SimpleNamespace(_wait_on_metadata=wait_on_metadata)

    async def send(self, topic: str, value: bytes, *, key: bytes, partition: int) -> Any:
        """The slow path: a batch was full (aiokafka waits until it went out)."""
        self.sent.append((topic, key, partition))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def records(self, topic: str, partition: int) -> list[tuple[bytes, bytes]]:
        out = []
        for batch in self._message_accumulator._batches[(topic, partition)]:
            out.extend(batch._builder.records)
        return out

    def batches(self) -> list[FakeBatch]:
        return [b for bs in self._message_accumulator._batches.values() for b in bs]


class Fence:
    def __init__(self) -> None:
        self.valid = True
        self.lapses: list[str] = []
        self.failure = None

    def may_write(self) -> bool:
        return self.valid

    def lapse(self, reason: str) -> None:
        self.lapses.append(reason)

    async def fail(self, exc: BaseException) -> None:
        raise AssertionError(exc)


def state(account: str, bot: str, version: int) -> EnforcementState:
    return EnforcementState(
        account_id=account, bot_id=bot, version=version, updated_at_ms=1_790_000_000_000,
        blocked_until_ms=None, block_policy_id=None, model="claude-sonnet-4-6",
        downgraded_until_ms=None, batching_interval_s=3, throttled_until_ms=None,
        throttle_reason=None, caps={}, plan="pro", fallback_text_daily="back tomorrow",
        fallback_text_monthly="back next month",
    )  # fmt: skip


def sender_with(producer: FakeProducer, fence: Fence | None = None) -> tuple[Sender, Outbox]:
    outbox = Outbox(TOPICS)
    metrics = Metrics()
    sender = Sender(
        SimpleNamespace(), TOPICS, outbox, DeadLetters(outbox, metrics), metrics,
        fence or Fence(), live=True,
    )  # fmt: skip
    sender._producer = producer  # already gated: the fake has no client to gate
    return sender, outbox


def test_each_key_keeps_its_order_on_its_partition_and_one_future_waits_per_batch() -> None:
    async def scenario() -> None:
        producer = FakeProducer()
        sender, outbox = sender_with(producer)
        for version in range(1, 4):
            for bot in ("b1", "b2", "b3"):
                effects = Effects(enforcement=(state("acct", bot, version),), notifications=())
                outbox.add(0, effects, 1_790_000_000_000)
        await sender.drain()
        assert not outbox.queue
        for bot in ("b1", "b2", "b3"):
            key = f"acct/{bot}".encode()
            p = kafka_partitioner(key, [0, 1, 2, 3], [0, 1, 2, 3])
            versions = [v for k, v in producer.records(TOPICS.control, p) if k == key]
            assert len(versions) == 3  # in the order the core made them
            assert versions == [outbox_value(bot, v) for v in (1, 2, 3)]
        sends = sender.take_sends()
        assert len(sends) == len(producer.batches())  # one future per batch, not per record
        for batch in producer.batches():
            batch.future.set_result(None)
        await asyncio.gather(*sends)

    run(scenario())


def outbox_value(bot: str, version: int) -> bytes:
    scratch = Outbox(TOPICS)
    scratch.add(0, Effects(enforcement=(state("acct", bot, version),), notifications=()), None)
    return scratch.queue[0].value


def test_a_full_batch_takes_the_producers_send_and_order_is_kept() -> None:
    async def scenario() -> None:
        producer = FakeProducer(room=2)
        sender, outbox = sender_with(producer)
        for version in range(1, 5):
            outbox.add_states(0, [state("acct", "b1", version)])
        await sender.drain()
        p = kafka_partitioner(b"acct/b1", [0, 1, 2, 3], [0, 1, 2, 3])
        assert len(producer.records(TOPICS.control, p)) == 2
        assert producer.sent == [(TOPICS.control, b"acct/b1", p)] * 2

    run(scenario())


def test_a_dead_letter_counts_once_its_batch_is_acknowledged() -> None:
    async def scenario() -> None:
        producer = FakeProducer()
        sender, outbox = sender_with(producer)
        sender.dead_letters.send_raw(TOPICS.usage, 2, 41, b"k", b"\x00bad", "not_avro", "bad")
        outbox.add_reroute(TOPICS.usage, b"acct", b"raw", 2, 3)
        await sender.drain()
        assert producer.records(TOPICS.usage, 3) == [(b"acct", b"raw")]  # to its home
        assert sender.dead_letters.acked == 0
        for batch in producer.batches():
            batch.future.set_result(None)
        await asyncio.gather(*sender.take_sends())
        await asyncio.sleep(0)
        assert sender.dead_letters.acked == 1

    run(scenario())


def test_no_state_is_handed_over_once_the_lease_may_have_lapsed() -> None:
    async def scenario() -> None:
        producer, fence = FakeProducer(), Fence()
        sender, outbox = sender_with(producer, fence)
        outbox.add_states(0, [state("acct", "b1", 1)])
        fence.valid = False
        await sender.drain()
        assert producer.batches() == [] and sender.take_sends() == []
        assert fence.lapses == ["membership lease lapsed before a decision went out"]

    run(scenario())


def test_the_drain_task_sends_what_the_agents_queue_without_them_waiting() -> None:
    async def scenario() -> None:
        producer = FakeProducer()
        sender, outbox = sender_with(producer)
        task = asyncio.ensure_future(sender.run())
        await asyncio.sleep(0)
        outbox.add_states(1, [state("acct", "b9", 1)])
        sender.wake()
        for _ in range(10):
            await asyncio.sleep(0)
        assert not outbox.queue and len(producer.batches()) == 1
        task.cancel()

    run(scenario())


def run(coro: Any) -> None:
    asyncio.run(coro)


def test_value_blocks_go_to_their_topic_keyed_by_value_in_the_order_the_core_made_them() -> None:
    async def scenario() -> None:
        producer = FakeProducer()
        sender, outbox = sender_with(producer)
        first = ValueBlock("acct", "b1", "end_user", "alice/x", 1_790_000_600_000, "pu")
        again = ValueBlock("acct", "b1", "end_user", "alice/x", 1_790_001_800_000, "pu")
        team = ValueBlock("acct", "*", "team", "red", 1_790_000_600_000, "pt")
        outbox.add(0, Effects(value_blocks=(first, team)), 1_790_000_000_000)
        outbox.add(0, Effects(value_blocks=(again,)), 1_790_001_200_000)
        assert bool(Effects(value_blocks=(first,)))  # a value block alone is an effect
        await sender.drain()
        key = b"acct/b1/end_user/alice/x"
        p = kafka_partitioner(key, [0, 1, 2, 3], [0, 1, 2, 3])
        blocks = [decode_value_block(v) for k, v in producer.records(TOPICS.value_blocks, p)
                  if k == key]  # fmt: skip
        assert blocks == [first, again]
        tp = kafka_partitioner(b"acct/*/team/red", [0, 1, 2, 3], [0, 1, 2, 3])
        assert [decode_value_block(v) for _, v in producer.records(TOPICS.value_blocks, tp)
                if _ == b"acct/*/team/red"] == [team]  # fmt: skip
        assert producer.records(TOPICS.control, p) == []

    run(scenario())
