"""Without a reachable broker, record() still returns at once and the overflow policy holds."""

from __future__ import annotations

import time

import pytest

from capstream.core.models import UsageEvent
from capstream.gateway import (
    NotDeliveredError,
    QueueFullError,
    RecorderClosedError,
    UsageEventError,
    UsageRecorder,
)
from capstream.streams.local_kafka import free_port
from capstream.streams.records import UsageEventRecord
from capstream.streams.settings import Settings


@pytest.fixture
def nowhere() -> Settings:
    return Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="offline")


def fields(i: int) -> dict[str, object]:
    return {
        "event_id": f"e{i}",
        "account_id": "acct-1",
        "bot_id": "bot-1",
        "conversation_id": "c1",
        "category": "text",
        "model": "claude-haiku",
        "tokens_in": 10,
    }


def test_a_full_queue_refuses_new_events_and_counts_them(nowhere: Settings) -> None:
    recorder = UsageRecorder(nowhere, max_queue=3, producer_config={"log_level": 0})
    started = time.perf_counter()
    taken = [recorder.record(**fields(i)) for i in range(5)]  # type: ignore[arg-type]
    assert time.perf_counter() - started < 0.5  # never waits for the broker
    assert taken == [True, True, True, False, False]
    stats = recorder.stats
    assert (stats.accepted, stats.rejected, stats.delivered) == (3, 2, 0)
    # flush tells how many accepted events Kafka has not confirmed
    assert recorder.flush(timeout=0.3) == 3
    with pytest.raises(NotDeliveredError) as caught:
        recorder.close(timeout=0.3)
    assert caught.value.pending == 3
    with pytest.raises(RecorderClosedError):
        recorder.record(**fields(9))  # type: ignore[arg-type]


def test_raise_policy_raises_instead_of_dropping(nowhere: Settings) -> None:
    recorder = UsageRecorder(
        nowhere, max_queue=1, on_overflow="raise", producer_config={"log_level": 0}
    )
    assert recorder.record(**fields(1))  # type: ignore[arg-type]
    with pytest.raises(QueueFullError, match="max_queue=1"):
        recorder.record(**fields(2))  # type: ignore[arg-type]
    assert recorder.stats.rejected == 1


def test_bad_events_raise_and_are_not_queued(nowhere: Settings) -> None:
    recorder = UsageRecorder(nowhere, producer_config={"log_level": 0})
    with pytest.raises(UsageEventError, match="category"):
        recorder.record(**{**fields(1), "category": "video"})  # type: ignore[arg-type]
    with pytest.raises(UsageEventError, match="tokens_in"):
        recorder.record(**{**fields(1), "tokens_in": -3})  # type: ignore[arg-type]
    with pytest.raises(UsageEventError, match="event_id"):
        recorder.record(account_id="a", bot_id="b", conversation_id="c", category="text")
    with pytest.raises(UsageEventError, match="occurred_at_ms"):
        recorder.record(**{**fields(1), "occurred_at_ms": 1_000})  # 1970: a clock error
    t = 1_790_000_000_000
    event = UsageEvent("e7", "acct-1", "bot-1", "c1", "audio", "m", 1, 2, 1, True, 5, t)
    assert recorder.record(event)
    wire = UsageEventRecord(**{**fields(8), "occurred_at_ms": t})  # type: ignore[arg-type]
    assert recorder.record(wire)
    assert recorder.stats.accepted == 2


def test_settings_are_checked(nowhere: Settings) -> None:
    from capstream.gateway import GatewayError

    with pytest.raises(GatewayError, match="on_overflow"):
        UsageRecorder(nowhere, on_overflow="block")  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="max_queue"):
        UsageRecorder(nowhere, max_queue=0)


def _started_flags(recorder: UsageRecorder) -> list[tuple[str, bool]]:
    """(conversation, conversation_started) of every queued event, decoded from its bytes."""
    from capstream.gateway.wire import encode_batch_texts
    from capstream.streams.codecs import codec

    value = encode_batch_texts("b", "p", 1, [body for _, body in recorder._queue])
    events = codec("UsageBatch").decode(value)["events"]
    return [(e["conversation_id"], e["conversation_started"]) for e in events]


def test_conversation_started_is_derived_when_left_out_in_bounded_memory(
    nowhere: Settings,
) -> None:
    """Issue 18 item 9: integrations that never set it still trip conversations policies."""
    recorder = UsageRecorder(nowhere, conversations_tracked=2, producer_config={"log_level": 0})
    try:
        for conv in ("c1", "c1", "c2", "c1"):
            recorder.record(**{**fields(0), "conversation_id": conv})  # type: ignore[arg-type]
        recorder.record(**{**fields(0), "conversation_id": "c2"}, conversation_started=True)  # type: ignore[arg-type]
        with pytest.raises(UsageEventError):  # not recorded: c3's next event is its first
            recorder.record(**{**fields(0), "conversation_id": "c3", "category": "video"})  # type: ignore[arg-type]
        for conv in ("c3", "c4", "c1"):  # c4 pushes c1 (the oldest of 2) out of memory
            recorder.record(**{**fields(0), "conversation_id": conv})  # type: ignore[arg-type]
        assert _started_flags(recorder) == [
            ("c1", True), ("c1", False), ("c2", True), ("c1", False), ("c2", True),
            ("c3", True), ("c4", True), ("c1", True),
        ]  # fmt: skip
        assert len(recorder._seen or {}) == 2
    finally:
        _discard(recorder)


def test_deriving_conversation_started_can_be_turned_off(nowhere: Settings) -> None:
    recorder = UsageRecorder(nowhere, conversations_tracked=0, producer_config={"log_level": 0})
    for _ in range(2):
        recorder.record(**fields(0))  # type: ignore[arg-type]
    assert _started_flags(recorder) == [("c1", False), ("c1", False)]
    _discard(recorder)


def _discard(recorder: UsageRecorder) -> None:
    with pytest.raises(NotDeliveredError):  # no broker: the queued events stay unconfirmed
        recorder.close(timeout=0.1)
