"""The membership lease and the produce gate of a worker (``capstream.processors.fencing``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.protocol.produce import ProduceRequest

from capstream.processors.fencing import FencedError, Membership, gate_client
from capstream.processors.options import WorkerOptions


def test_a_lease_counts_from_when_the_request_was_sent() -> None:
    m = Membership("g", 10.0)
    assert not m.valid()  # no assignment yet
    m.renew(time.monotonic() - 100, 3)  # answered, but sent longer ago than the timeout
    assert not m.valid()
    m.renew(time.monotonic(), 4)
    assert m.valid() and m.generation == 4
    assert m.until <= time.monotonic() + 10 - m.margin_s


@pytest.mark.parametrize("session_s", [6.0, 10.0, 30.0])
def test_the_lease_ends_before_the_group_can_move_the_partitions_at_any_timeout(
    session_s: float,
) -> None:
    """The coordinator hands a silent member's partitions on no sooner than a session timeout
    after its last heartbeat arrived (so after it was sent); the lease must end before that,
    and must outlast two heartbeat intervals so a healthy worker never lapses between them."""
    options = WorkerOptions(session_timeout_s=session_s, heartbeat_interval_s=session_s / 3)
    m = Membership("g", options.session_timeout_s)
    sent = time.monotonic()
    m.renew(sent, 1)
    assert m.until - sent <= session_s - 1.0  # at least a second of margin
    assert m.until - sent >= 2 * options.heartbeat_interval_s
    default = WorkerOptions()
    lease = default.session_timeout_s - Membership("g", default.session_timeout_s).margin_s
    assert 3 * default.heartbeat_interval_s <= lease < default.session_timeout_s


def test_an_answer_to_a_request_sent_before_the_member_was_lost_does_not_revive_it() -> None:
    m = Membership("g", 10.0)
    sent = time.monotonic()
    m.renew(sent, 1)
    m.lose()
    assert not m.valid()
    m.renew(sent, 1)  # a heartbeat answered late, sent before the loss
    assert not m.valid()
    m.renew(time.monotonic() + 0.001, 2)  # a SyncGroup of the next generation
    assert m.valid()


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def ready(self, node_id: int, **kw: Any) -> bool:
        return True

    async def send(self, node_id: int, request: Any, **kw: Any) -> str:
        self.sent.append(request)
        return "ok"


def _produce(topic: str) -> ProduceRequest:
    return ProduceRequest(None, -1, 1000, [(topic, [(0, b"x")])])


def test_state_records_are_not_sent_once_writing_is_not_allowed() -> None:
    client = FakeClient()
    allowed = [True]
    gate_client(client, lambda: allowed[0], frozenset({"control"}))

    async def run() -> None:
        assert await client.send(0, _produce("control")) == "ok"
        allowed[0] = False
        with pytest.raises(FencedError):
            await client.send(0, _produce("control"))
        # Other topics (dead letters of the policy reader) and other requests still go.
        assert await client.send(0, _produce("usage.dlq")) == "ok"
        assert await client.send(0, "metadata request") == "ok"

    asyncio.run(run())
    assert len(client.sent) == 3
    assert not FencedError().retriable  # the producer fails the batch, never resends it


def test_a_gate_for_every_topic_refuses_every_produce_request() -> None:
    client = FakeClient()
    gate_client(client, lambda: False, None)

    async def run() -> None:
        with pytest.raises(FencedError):
            await client.send(0, _produce("g-accounts-changelog"))

    asyncio.run(run())
    assert client.sent == []
