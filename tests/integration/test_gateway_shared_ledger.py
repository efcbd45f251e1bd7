"""Fallback once per conversation and one throttled reply per minute hold across gateway
replicas and restarts: they share what was sent through the gateway-sent topic (issue 18
item 7). Two gateway instances on the real broker; the propagation delay is measured."""

from __future__ import annotations

import statistics
import time
from typing import Any

from test_gateway_control import LATER, NOW, control_producer, publish, state, wait_for

from capstream.core.models import CapStatus
from capstream.gateway import Gateway
from capstream.gateway.ledger import KafkaLedger
from capstream.streams.control_wire import control_key
from capstream.streams.settings import Settings


def _capped(topics: Settings, account: str) -> None:
    producer = control_producer(topics)
    s = state(account, "bot-1", 1, caps={"text": CapStatus("daily", "2026-09-21", LATER)})
    publish(producer, topics, s, control_key(account, "bot-1"))
    assert producer.flush(10) == 0


def test_a_fallback_sent_by_one_replica_is_not_sent_by_another_nor_after_a_restart(
    topics: Settings,
) -> None:
    _capped(topics, "acct-7")
    delays: list[float] = []
    with Gateway(topics) as a, Gateway(topics) as b:
        assert a.wait_ready(30) and b.wait_ready(30)
        assert isinstance(b.ledger, KafkaLedger)
        for c in range(20):
            conv = f"conv-{c}"
            first = a.gate("acct-7", "bot-1", conv, "text", NOW + c)
            sent = time.perf_counter()
            assert first.action == "fallback"
            key = ("acct-7", "bot-1", conv, "2026-09-21")
            assert wait_for(lambda key=key: b.ledger.fallback_sent(key), 10)
            delays.append(time.perf_counter() - sent)
            again = b.gate("acct-7", "bot-1", conv, "text", NOW + 100 + c)
            assert (again.action, again.text) == ("skip", None)
    print(
        f"gateway-sent propagation (fallback at A -> known at B): median "
        f"{statistics.median(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms"
    )
    # a gateway started afterwards (a restart) reads what was sent before it answers
    with Gateway(topics) as restarted:
        assert restarted.wait_ready(30)
        verdicts = [restarted.gate("acct-7", "bot-1", f"conv-{c}", "text", NOW + 500 + c)
                    for c in range(20)]  # fmt: skip
        assert {v.action for v in verdicts} == {"skip"}
        assert restarted.gate("acct-7", "bot-1", "conv-new", "text").action == "fallback"


def test_one_reply_per_conversation_per_minute_across_replicas(topics: Settings) -> None:
    producer = control_producer(topics)
    throttled: dict[str, Any] = {"batching_interval_s": 60, "throttle_reason": "strict"}
    publish(producer, topics, state("acct-8", "bot-1", 1, **throttled),
            control_key("acct-8", "bot-1"))  # fmt: skip
    assert producer.flush(10) == 0
    now = int(time.time() * 1000)
    with Gateway(topics) as a, Gateway(topics) as b:
        assert a.wait_ready(30) and b.wait_ready(30)
        first = a.gate("acct-8", "bot-1", "conv-1", "text", now)
        assert (first.action, first.reply_at_ms) == ("allow", None)
        key = ("acct-8", "bot-1", "conv-1")
        assert wait_for(lambda: b.ledger.last_reply(key) == now, 10)
        held = b.gate("acct-8", "bot-1", "conv-1", "text", now + 5_000)
        assert (held.action, held.reply_at_ms) == ("allow", now + 60_000)
        other = b.gate("acct-8", "bot-1", "conv-2", "text", now + 5_000)
        assert other.reply_at_ms is None  # another conversation is not held
