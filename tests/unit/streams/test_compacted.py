"""The one compacted-topic reader, on a fake consumer: every partition from the beginning,
ready at the end offsets, reading on, new partitions and topics picked up; and the gateway's
control view, the API's view and the worker's catalog reader on it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError

from capstream.api.errors import UnavailableError
from capstream.api.view import TopicView
from capstream.core.models import EnforcementState, ValueBlock
from capstream.gateway import ControlView, Gateway
from capstream.processors.catalog import Catalog
from capstream.processors.catalog_reader import CatalogReader
from capstream.processors.metrics import Metrics
from capstream.streams.compacted import CompactedReader
from capstream.streams.control_wire import control_key, encode_state
from capstream.streams.records import BotResumeRecord
from capstream.streams.settings import Settings
from capstream.streams.value_blocks import encode_value_block, value_block_key

SETTINGS = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="t")


@dataclass
class Msg:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None = None
    _value: bytes | None = None
    _error: Any = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> Any:
        return self._error


class Eof:
    def code(self) -> int:
        return KafkaError._PARTITION_EOF

    def str(self) -> str:
        return "end of partition"


@dataclass
class Broker:
    """Topics as lists of partitions of (key, value) records, shared with the consumers."""

    topics: dict[str, list[list[tuple[bytes | None, bytes | None]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    configs: list[dict[str, Any]] = field(default_factory=list)

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        with self.lock:
            self.topics[topic][partition].append((key, value))

    def consumer(self, config: dict[str, Any]) -> FakeConsumer:
        self.configs.append(config)
        return FakeConsumer(self)


class FakeConsumer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.position: dict[tuple[str, int], int] = {}
        self.eof_sent: set[tuple[str, int]] = set()
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> Any:
        with self.broker.lock:
            parts = self.broker.topics.get(topic)
        meta = None if parts is None else SimpleNamespace(
            partitions=dict.fromkeys(range(len(parts))), error=None
        )  # fmt: skip
        return SimpleNamespace(topics={} if meta is None else {topic: meta})

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        with self.broker.lock:
            return 0, len(self.broker.topics[tp.topic][tp.partition])

    def incremental_assign(self, tps: list[Any]) -> None:
        for tp in tps:
            self.position[(tp.topic, tp.partition)] = 0

    def _next(self) -> Msg | None:
        with self.broker.lock:
            for (topic, p), pos in self.position.items():
                records = self.broker.topics[topic][p]
                if pos < len(records):
                    self.position[(topic, p)] = pos + 1
                    self.eof_sent.discard((topic, p))
                    key, value = records[pos]
                    return Msg(topic, p, pos, key, value)
                if (topic, p) not in self.eof_sent:
                    self.eof_sent.add((topic, p))
                    return Msg(topic, p, pos, _error=Eof())
        return None

    def poll(self, timeout: float) -> Msg | None:
        msg = self._next()
        if msg is None:
            time.sleep(min(timeout, 0.01))
        return msg

    def consume(self, n: int, timeout: float) -> list[Msg]:
        out: list[Msg] = []
        while len(out) < n and (msg := self._next()) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        self.closed = True


def _reader(broker: Broker, topics: list[str], seen: list[tuple[str, int, bytes | None]]) -> Any:
    return CompactedReader(
        {"group.id": "g"},
        topics,
        lambda m: seen.append((m.topic(), m.offset(), m.value())),
        name="test-reader",
        consumer=broker.consumer,
        metadata_refresh_s=0.05,
    )


def test_ready_once_every_partition_is_read_to_its_end_offset_then_reading_on() -> None:
    broker = Broker({"a": [[(b"k", b"a0"), (b"k", b"a1")], []], "b": [[(b"k", b"b0")]]})
    seen: list[tuple[str, int, bytes | None]] = []
    reader = _reader(broker, ["a", "b"], seen).start()
    try:
        assert reader.wait_ready(5)
        assert sorted(seen) == [("a", 0, b"a0"), ("a", 1, b"a1"), ("b", 0, b"b0")]
        assert reader.applied[("a", 0)] == 2 and reader.applied[("b", 0)] == 1
        assert reader.staleness_s == 0.0
        broker.append("a", 1, b"k", b"later")
        assert reader.wait_for("a", 1, 0, 5)
        assert ("a", 0, b"later") in seen
        assert not reader.wait_for("a", 1, 1, 0.1)  # nothing at offset 1 yet
    finally:
        reader.close()
    config = broker.configs[0]
    assert (config["enable.auto.commit"], config["enable.partition.eof"]) == (False, True)
    assert config["group.id"] == "g"


def test_not_ready_while_a_topic_is_missing_and_ready_once_it_exists() -> None:
    broker = Broker({"a": [[(None, b"x")]]})
    seen: list[tuple[str, int, bytes | None]] = []
    reader = _reader(broker, ["a", "missing"], seen).start()
    try:
        assert not reader.wait_ready(0.3)
        assert reader.problem == "topic missing does not exist; run `capstream topics create`"
        with broker.lock:
            broker.topics["missing"] = [[(None, b"y")], [(None, b"z")]]
        assert reader.wait_ready(5)
        assert reader.problem is None
        assert sorted(v for _, _, v in seen) == [b"x", b"y", b"z"]
    finally:
        reader.close()


def _state(bot: str, version: int) -> EnforcementState:
    return EnforcementState(
        account_id="acct-1", bot_id=bot, version=version, updated_at_ms=1, blocked_until_ms=None,
        block_policy_id=None, model="m", downgraded_until_ms=None, batching_interval_s=3,
        throttled_until_ms=None, throttle_reason=None, caps={}, plan="pro",
        fallback_text_daily="d", fallback_text_monthly="m",
    )  # fmt: skip


def test_the_control_view_reads_through_the_injected_consumer() -> None:
    records = [
        (control_key("acct-1", "bot-1"), encode_state(_state("bot-1", 2))),
        (control_key("acct-1", "bot-1"), encode_state(_state("bot-1", 1))),  # older: ignored
        (control_key("acct-1", "bot-2"), encode_state(_state("bot-2", 1))),
        (control_key("acct-1", "bot-2"), None),  # tombstone
    ]
    broker = Broker({"t.control": [records], "t.value-blocks": [[]]})
    with ControlView(SETTINGS, consumer=broker.consumer) as view:
        assert view.wait_ready(5)
        assert view.get("acct-1", "bot-1") is not None
        assert view.get("acct-1", "bot-1").version == 2  # type: ignore[union-attr]
        assert view.get("acct-1", "bot-2") is None
        assert view.stats[1:] == (2, 1, 0, 1, 0)  # applied, ignored, invalid, deleted, blocks
        assert view.staleness_s == 0.0


def test_the_control_view_reads_value_blocks_and_a_gateway_refuses_only_that_value() -> None:
    now = int(time.time() * 1000)
    ended = ValueBlock("acct-1", "bot-1", "end_user", "carol", now - 1, "pu")
    alice = ValueBlock("acct-1", "bot-1", "end_user", "alice", now + 600_000, "pu")

    def rec(b: ValueBlock) -> tuple[bytes, bytes]:
        return value_block_key(b.account_id, b.bot_id, b.attribute, b.value), encode_value_block(b)

    blocks = [rec(ended), rec(alice), (b"x", b"not avro")]
    broker = Broker({"t.control": [[]], "t.value-blocks": [blocks, []]})
    view = ControlView(SETTINGS, consumer=broker.consumer)
    with Gateway(SETTINGS, view=view, reporter=SimpleNamespace(close=lambda: None),  # type: ignore[arg-type]
                 share_ledger=False) as gateway:  # fmt: skip
        assert view.wait_ready(5)
        assert view.value_blocks == {"acct-1": {("bot-1", "end_user", "alice"): alice}}
        assert view.stats.invalid == 1 and view.stats.value_blocks == 1  # the ended one dropped
        refused = gateway.gate("acct-1", "bot-1", "c1", "text", attributes={"end_user": "alice"})
        assert (refused.action, refused.reason) == ("paused", "policy_block:pu")
        assert refused.resumes_at_ms == alice.blocked_until_ms
        bob = gateway.gate("acct-1", "bot-1", "c1", "text", attributes={"end_user": "bob"})
        carol = gateway.gate("acct-1", "bot-1", "c1", "text", attributes={"end_user": "carol"})
        assert bob.action == carol.action == "allow"


def test_the_api_view_names_a_missing_topic_at_start() -> None:
    broker = Broker({"t.policies": [[]]})
    view = TopicView(SETTINGS, include=("policies", "tenants"), consumer=broker.consumer)
    with pytest.raises(UnavailableError, match=r"topic t\.tenants does not exist"):
        view.start(timeout_s=5)


def test_the_api_view_waits_a_moment_for_a_topic_created_just_before() -> None:
    broker = Broker({"t.policies": [[]]})
    view = TopicView(SETTINGS, include=("policies", "tenants"), consumer=broker.consumer)
    later = threading.Timer(0.5, lambda: broker.topics.setdefault("t.tenants", [[]]))
    later.start()
    try:
        view.start(timeout_s=5)  # the tenants topic appears in the metadata 0.5 s in
    finally:
        later.cancel()
        view.stop()


def test_the_catalog_reader_applies_on_the_loop_ready_then_re_decides_changes() -> None:
    def resume(at: int) -> bytes:
        return BotResumeRecord(
            account_id="acme", bot_id="bot-1", resumed_at_ms=at, resumed_by="key:abc"
        ).to_bytes()

    broker = Broker(
        {
            "t.policies": [[]],
            "t.tenants": [[(b"acme", b"junk")]],
            "t.resumes": [[(b"acme/bot-1", resume(1_000))], []],
            "t.grants": [[]],
        }
    )
    dead: list[tuple[Any, ...]] = []
    changed: list[set[str]] = []
    drains: list[int] = []
    catalog = Catalog()

    async def drain() -> None:
        drains.append(len(changed))

    async def scenario() -> None:
        reader = CatalogReader(
            SETTINGS, catalog, Metrics(), changed.append, lambda *a: dead.append(a),
            consumer=broker.consumer,
        )  # fmt: skip
        task = asyncio.create_task(reader.run(drain))
        try:
            await asyncio.wait_for(reader.ready.wait(), 5)
            # the load applied everything read before ready, and re-decided nothing itself
            assert catalog.apply_resume(b"acme/bot-1", resume(1_000)) is None  # held already
            assert [(d[0], d[1], d[2], d[5]) for d in dead] == [("t.tenants", 0, 0, "not_avro")]
            assert changed == []
            broker.append("t.resumes", 0, b"acme/bot-1", resume(2_000))
            for _ in range(500):
                if drains:
                    break
                await asyncio.sleep(0.01)
            assert changed == [{"acme"}]
            assert drains == [1]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert broker.configs[0]["client.id"] == "capstream-processors-catalog"
