"""``ReplyBatcher``: one AI reply per conversation per batching interval (3 s, or 60 s)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from time import time_ns
from typing import Generic, TypeVar

from capstream.core.models import Verdict
from capstream.gateway.errors import GatewayError

M = TypeVar("M")


def epoch_ms() -> int:
    """The default clock: epoch milliseconds (the unit of ``Verdict.reply_at_ms``)."""
    return time_ns() // 1_000_000


@dataclass(slots=True)
class ReplyBatch(Generic[M]):
    """The messages of one conversation to answer with a single AI call."""

    conversation: Hashable
    messages: list[M]
    model: str | None
    batching_interval_s: int
    opened_at_ms: int
    due_at_ms: int
    _seq: int = field(default=0, repr=False)


class ReplyBatcher(Generic[M]):
    """Coalesce each conversation's incoming messages into one AI call per interval.

    ``add(conversation, message, verdict)`` puts an allowed message into the conversation's
    open batch; the batch is due ``verdict.batching_interval_s`` after its first message
    (3 s normally, 60 s while throttled) and never before ``verdict.reply_at_ms``. A batch
    opens only after the conversation's previous reply, so while throttled a conversation
    gets at most one reply per minute. ``due()`` hands out the batches whose time has come.

    The clock is injected (epoch ms) so tests need no sleeping. One batcher belongs to one
    thread or event loop; ``serve()`` runs it on asyncio.
    """

    def __init__(self, clock: Callable[[], int] = epoch_ms) -> None:
        self.clock = clock
        self._open: dict[Hashable, ReplyBatch[M]] = {}
        self._heap: list[tuple[int, int, Hashable]] = []
        self._seq = itertools.count()
        self._changed: asyncio.Event | None = None

    def add(
        self, conversation: Hashable, message: M, verdict: Verdict, now: int | None = None
    ) -> ReplyBatch[M]:
        """Add an allowed message; returns its (open) batch with the time it is due."""
        if verdict.action != "allow":
            raise GatewayError(
                f"only allowed AI calls are batched; this verdict is {verdict.action!r} "
                "(send the fallback text, or skip, instead)"
            )
        now = self.clock() if now is None else now
        batch = self._open.get(conversation)
        interval = verdict.batching_interval_s
        if batch is None:
            batch = ReplyBatch(conversation, [message], verdict.model, interval, now, now)
            self._open[conversation] = batch
        else:
            batch.messages.append(message)
            batch.model = verdict.model
            batch.batching_interval_s = interval
        due = batch.opened_at_ms + interval * 1000
        if verdict.reply_at_ms is not None:
            due = max(due, verdict.reply_at_ms)
        if due != batch.due_at_ms or len(batch.messages) == 1:
            batch.due_at_ms = due
            batch._seq = next(self._seq)
            heapq.heappush(self._heap, (due, batch._seq, conversation))
        if self._changed is not None:
            self._changed.set()
        return batch

    def due(self, now: int | None = None) -> list[ReplyBatch[M]]:
        """Remove and return the batches due at ``now``, earliest first."""
        now = self.clock() if now is None else now
        ready: list[ReplyBatch[M]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, conversation = heapq.heappop(heap)
            batch = self._open.get(conversation)
            if batch is None or batch._seq != seq:
                continue  # superseded by a later due time
            del self._open[conversation]
            ready.append(batch)
        return ready

    def next_due_ms(self) -> int | None:
        """When the earliest open batch is due, or None when nothing waits."""
        heap = self._heap
        while heap:
            due, seq, conversation = heap[0]
            batch = self._open.get(conversation)
            if batch is not None and batch._seq == seq:
                return due
            heapq.heappop(heap)
        return None

    def __len__(self) -> int:
        """Conversations with messages waiting."""
        return len(self._open)

    async def serve(
        self,
        handle: Callable[[ReplyBatch[M]], Awaitable[None]],
        stop: asyncio.Event,
    ) -> None:
        """Call ``handle(batch)`` for each batch when it is due, until ``stop`` is set."""
        self._changed = asyncio.Event()
        while not stop.is_set():
            for batch in self.due():
                await handle(batch)
            nxt = self.next_due_ms()
            delay = 1.0 if nxt is None else min(1.0, max(0.0, (nxt - self.clock()) / 1000))
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)
