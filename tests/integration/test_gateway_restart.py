"""A broker restart loses no recorded usage and the control view carries on (own broker)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from test_gateway_control import LATER, state, wait_for
from test_gateway_usage import read_topic, usage

from capstream.gateway import ControlView, Gateway, UsageRecorder
from capstream.streams.control_wire import control_key, record_from_state
from capstream.streams.local_kafka import LocalKafka, free_port
from capstream.streams.records import UsageBatchRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalKafka]:
    kafka = LocalKafka(tmp_path / "restart-broker", free_port(), free_port())
    kafka.up(timeout=120)
    try:
        yield kafka
    finally:
        kafka.down()


def test_usage_and_decisions_survive_a_broker_restart(broker: LocalKafka, tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        topic_prefix=f"r{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "data",
    )
    create_topics(settings)
    quiet = {"log_level": 0}
    recorder = UsageRecorder(settings, producer_config=quiet)
    gateway = Gateway(settings)
    strict = ControlView(settings, on_disconnect="closed", max_disconnected_s=1.0)
    control = Producer({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    try:
        assert gateway.wait_ready(30) and strict.wait_ready(30)
        assert wait_for(lambda: not strict.closed)
        for i in range(2_000):
            recorder.record(**usage(i, f"acct-{i % 30}"))
        assert recorder.flush(30) == 0
        for i in range(2_000, 3_000):  # some of these are in flight when the broker stops
            recorder.record(**usage(i, f"acct-{i % 30}"))

        broker.down()
        started = time.perf_counter()
        for i in range(3_000, 4_000):
            assert recorder.record(**usage(i, f"acct-{i % 30}"))
        assert time.perf_counter() - started < 1.0  # recording never waits for the broker
        assert wait_for(lambda: strict.closed, timeout=20)  # fail-closed after 1 s away
        assert gateway.staleness_s > 1.0
        # fail-open (the default): answers go on from the states held
        assert gateway.gate("acct-1", "bot-1", "c1", "text").action == "allow"

        broker.up(timeout=120)
        assert recorder.flush(60) == 0
        blocked = state("acct-1", "bot-1", 1, blocked_until_ms=LATER, block_policy_id="p1")
        control.produce(
            Topics(settings.topic_prefix).control,
            record_from_state(blocked).to_bytes(),
            control_key("acct-1", "bot-1"),
        )
        assert control.flush(30) == 0
        assert wait_for(lambda: gateway.gate("acct-1", "bot-1", "c1", "text").action == "paused")
        assert wait_for(lambda: not strict.closed, timeout=20)
        # each view consumes on its own thread: the fail-closed one may see the state later
        assert wait_for(lambda: strict.get("acct-1", "bot-1") is not None, timeout=20)
        assert wait_for(lambda: gateway.staleness_s == 0.0, timeout=20)
    finally:
        recorder.close(30)
        gateway.close()
        strict.close()

    records = read_topic(broker.bootstrap, Topics(settings.topic_prefix).usage)
    batches = [UsageBatchRecord.from_bytes(m.value()) for m in records]
    seen = Counter(e.event_id for b in batches for e in b.events)
    assert len(seen) == 4_000
    assert set(seen.values()) == {1}  # exactly once, in spite of the restart
