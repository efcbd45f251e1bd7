"""The one drainer of the outbox: hands every queued record to Faust's producer, in order.

Control states, notifications, feed rows, dead letters and rerouted events wait in the one
ordered :class:`Outbox`; a single drainer at a time keeps a key's versions in order on the
compacted control topic. The futures of what was handed over are kept until the flusher
takes them: it acks no record before the records derived from it are acknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from capstream.processors.dlq import DeadLetters
from capstream.processors.fencing import gate_client
from capstream.processors.flusher import Fence, consume
from capstream.processors.metrics import Metrics
from capstream.processors.outbox import Outbox
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)


class Sender:
    """Sends the outbox through Faust's producer; state topics only while the lease holds."""

    def __init__(
        self,
        app: Any,
        topics: Topics,
        outbox: Outbox,
        dead_letters: DeadLetters,
        metrics: Metrics,
        fence: Fence,
        *,
        live: bool,
    ) -> None:
        self.app = app
        self.topics = topics
        self.outbox = outbox
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.fence = fence
        self.live = live
        """Wall-clock mode: observe event-to-decision latency."""
        self.sends: list[asyncio.Future[Any]] = []
        self._lock: asyncio.Lock | None = None
        self._gated = False
        self.state_topics = frozenset((topics.control, topics.notifications, topics.feed))

    def take_sends(self) -> list[asyncio.Future[Any]]:
        sends, self.sends = self.sends, []
        return sends

    def drop(self) -> None:
        """Forget what waits to be sent and what was sent (nobody waits for it now)."""
        self.outbox.queue.clear()
        for fut in self.sends:  # refused or not
            fut.add_done_callback(consume)
        self.sends.clear()

    async def drain(self) -> None:
        """Hand every queued record to the producer, in order (one drainer at a time)."""
        queue = self.outbox.queue
        if not queue:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._gated:
                # Control states, notifications and feed rows are state: a worker whose
                # membership may have lapsed never sends them (dead letters of the policy
                # reader may go out before the first assignment).
                client = self.app.producer._ensure_producer().client
                gate_client(client, self.fence.may_write, self.state_topics)
                self._gated = True
            send = self.app.producer.send
            observe = self.metrics.latency.observe
            states = self.metrics.decisions.labels(kind="state")
            notes = self.metrics.decisions.labels(kind="notification")
            control, notifications = self.topics.control, self.topics.notifications
            while queue:
                out = queue[0]
                if out.topic in self.state_topics and not self.fence.may_write():
                    self.fence.lapse("membership lease lapsed before a decision went out")
                    return
                try:
                    fut = await send(out.topic, out.key, out.value, out.to_partition, None, None)
                except Exception as exc:
                    # Not sent: nothing read so far may be acked (the flush checks the
                    # failure); the worker stops and replays from its last commit.
                    log.exception("producing to %s failed; the worker stops", out.topic)
                    await self.fence.fail(exc)
                    raise
                queue.popleft()
                self.sends.append(fut)
                if out.topic == control:
                    states.inc()
                    if self.live and out.origin_ms is not None:
                        fut.add_done_callback(functools.partial(_observe, observe, out.origin_ms))
                elif out.topic == notifications:
                    notes.inc()
                elif out.dead_letter is not None:
                    fut.add_done_callback(
                        functools.partial(self.dead_letters.acknowledged, out.dead_letter)
                    )


def _observe(observe: Callable[[float], None], origin_ms: int, _fut: Any) -> None:
    observe(max(0.0, time.time() - origin_ms / 1000))
