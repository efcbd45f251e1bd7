"""Messages coalesce into one AI call per interval; throttled, one reply per minute."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from capstream.core.models import Action, Verdict
from capstream.gateway import GatewayError, ReplyBatch, ReplyBatcher


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


FAST = Verdict(Action.ALLOW, "claude-sonnet-4-6", 3, None, None, None)
SLOW = Verdict(Action.ALLOW, "claude-haiku", 60, None, "throttled:budget", None)


def test_messages_within_three_seconds_become_one_call() -> None:
    clock = Clock()
    batcher: ReplyBatcher[str] = ReplyBatcher(clock)
    batcher.add("c1", "hi", FAST)
    clock.now += 1_000
    batcher.add("c1", "are you there?", FAST)
    batcher.add("c2", "hello", FAST)
    clock.now += 1_999
    assert batcher.due() == []
    clock.now += 1
    (batch,) = batcher.due()
    assert batch.conversation == "c1"
    assert batch.messages == ["hi", "are you there?"]
    assert batch.model == "claude-sonnet-4-6"
    clock.now += 1_000
    assert [b.messages for b in batcher.due()] == [["hello"]]
    assert len(batcher) == 0


def test_throttled_conversation_gets_at_most_one_reply_per_minute() -> None:
    clock = Clock()
    batcher: ReplyBatcher[str] = ReplyBatcher(clock)
    replies: list[tuple[int, list[str]]] = []
    start = clock.now
    # a chatty customer: one message every 5 seconds for 3 minutes
    for _ in range(36):
        batcher.add("c1", f"m{clock.now}", SLOW)
        clock.now += 5_000
        replies += [(clock.now, b.messages) for b in batcher.due()]
    assert len(replies) == 3
    times = [t for t, _ in replies]
    assert all(b - a >= 60_000 for a, b in itertools.pairwise(times))
    assert times[0] - start >= 60_000
    clock.now += 60_000  # nothing is lost: the rest comes in the next reply
    replies += [(clock.now, b.messages) for b in batcher.due()]
    assert sum(len(m) for _, m in replies) == 36
    assert len(batcher) == 0


def test_a_batch_that_gets_throttled_waits_the_full_minute() -> None:
    clock = Clock()
    batcher: ReplyBatcher[str] = ReplyBatcher(clock)
    opened = clock.now
    batcher.add("c1", "a", FAST)
    clock.now += 2_000
    batch = batcher.add("c1", "b", SLOW)  # the throttle kicked in before the reply
    assert batch.due_at_ms == opened + 60_000
    clock.now = opened + 3_000
    assert batcher.due() == []
    clock.now = opened + 60_000
    assert [b.messages for b in batcher.due()] == [["a", "b"]]


def test_reply_at_from_the_verdict_is_respected() -> None:
    clock = Clock()
    batcher: ReplyBatcher[str] = ReplyBatcher(clock)
    held = Verdict(Action.ALLOW, "claude-haiku", 60, None, None, None, clock.now + 90_000)
    batch = batcher.add("c1", "x", held)
    assert batch.due_at_ms == clock.now + 90_000
    assert batcher.next_due_ms() == clock.now + 90_000


def test_only_allowed_calls_are_batched() -> None:
    batcher: ReplyBatcher[str] = ReplyBatcher(Clock())
    fallback = Verdict(Action.FALLBACK, None, 0, "back tomorrow", "cap", None)
    with pytest.raises(GatewayError, match="fallback"):
        batcher.add("c1", "x", fallback)


async def test_serve_calls_the_handler_when_batches_are_due() -> None:
    batcher: ReplyBatcher[str] = ReplyBatcher()
    handled: list[ReplyBatch[str]] = []
    stop = asyncio.Event()

    async def handle(batch: ReplyBatch[str]) -> None:
        handled.append(batch)
        stop.set()

    quick = Verdict(Action.ALLOW, "m", 0, None, None, None)  # due at once
    task = asyncio.create_task(batcher.serve(handle, stop))
    await asyncio.sleep(0.01)
    batcher.add("c1", "hello", quick)
    await asyncio.wait_for(task, 3)
    assert [b.messages for b in handled] == [["hello"]]
