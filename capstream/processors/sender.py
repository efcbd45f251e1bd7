"""The one drainer of the outbox: hands every queued record to the producer, in order.

Control states, value blocks, notifications, feed rows, dead letters and rerouted events wait
in the one ordered :class:`Outbox`; one drain at a time takes everything queued, groups it by
destination (topic, partition) in queue order, and hands each group to the producer as
whole batches (``create_batch`` / ``send_batch``), so a key's versions keep their order on the
compacted control topic. aiokafka queues a partition's next batch only once its previous one
went out, so a drain can wait a linger; it runs in a task of its own (:meth:`run`), woken by
the agents, which never wait for it. The futures of what was handed over are kept until the
flusher takes them: it acks no record before the records derived from it are acknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.structs import TopicPartition

from capstream.processors.dlq import DeadLetters
from capstream.processors.fencing import gate_client
from capstream.processors.flusher import Fence, consume
from capstream.processors.metrics import Metrics
from capstream.processors.outbox import Outbox
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
BACKLOG = 20_000
"""Queued records above which an agent waits for the drain (bounds the outbox's memory)."""


class Sender:
    """Sends the outbox through the app's producer; state topics only while the lease holds."""

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
        self._wake: asyncio.Event | None = None
        self._producer: Any = None
        self._ready: set[str] = set()
        self.state_topics = frozenset(
            (topics.control, topics.value_blocks, topics.notifications, topics.feed)
        )

    def take_sends(self) -> list[asyncio.Future[Any]]:
        sends, self.sends = self.sends, []
        return sends

    def drop(self) -> None:
        """Forget what waits to be sent and what was sent (nobody waits for it now)."""
        self.outbox.queue.clear()
        for fut in self.sends:  # refused or not
            fut.add_done_callback(consume)
        self.sends.clear()

    def wake(self) -> None:
        """Records were queued: the drain task sends them soon (without the caller waiting)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """The drain task: drain whenever woken."""
        self._wake = wake = asyncio.Event()
        while True:
            await wake.wait()
            wake.clear()
            try:
                await self.drain()
            except Exception:
                return  # the worker stops (drain reported it to the fence)

    def _aioproducer(self) -> Any:
        if self._producer is None:
            producer = self.app.producer._ensure_producer()
            # Control states, notifications and feed rows are state: a worker whose
            # membership may have lapsed never sends them (dead letters of the policy
            # reader may go out before the first assignment).
            gate_client(producer.client, self.fence.may_write, self.state_topics)
            self._producer = producer
        return self._producer

    async def drain(self) -> None:
        """Hand every queued record to the producer, in order (one drain at a time)."""
        queue = self.outbox.queue
        if not queue:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            producer = self._aioproducer()
            for topic in {out.topic for out in queue} - self._ready:
                await producer.client._wait_on_metadata(topic)  # once per topic
                self._ready.add(topic)
            if not self.fence.may_write() and any(o.topic in self.state_topics for o in queue):
                self.fence.lapse("membership lease lapsed before a decision went out")
                return
            try:
                await self._hand_over(producer, queue)
            except Exception as exc:
                # Not sent: nothing read so far may be acked (the flush checks the failure);
                # the worker stops and replays from its last commit.
                log.exception("producing the outbox failed; the worker stops")
                await self.fence.fail(exc)
                raise

    async def _hand_over(self, producer: Any, queue: Any) -> None:
        """Append each queued record to its partition's open batch in the producer, in
        order: what ``AIOKafkaProducer.send`` does, without a coroutine, a metadata wait, a
        partition list and a future per record. A full batch takes the ``send`` path (which
        waits until the batch went out)."""
        acc = producer._message_accumulator
        partitioner = producer._partitioner
        metadata = producer._metadata
        places: dict[str, tuple[list[int], list[int]]] = {}
        batches: dict[tuple[str, int], tuple[Any, asyncio.Future[Any]]] = {}
        control, notifications = self.topics.control, self.topics.notifications
        observe = self.metrics.latency.observe if self.live else None
        origins: dict[int, list[int]] = {}
        states = notes = 0
        while queue:
            out = queue[0]
            topic = out.topic
            p = out.to_partition
            if p is None:
                place = places.get(topic)
                if place is None:
                    place = places[topic] = (
                        sorted(metadata.partitions_for_topic(topic)),
                        sorted(metadata.available_partitions_for_topic(topic)),
                    )
                p = partitioner(out.key, place[0], place[1])
            if acc._exception is not None or acc._closed:
                fut = await producer.send(topic, out.value, key=out.key, partition=p)
                batch = None
            else:
                tp = TopicPartition(topic, p)
                pending = acc._batches.get(tp)
                batch = pending[-1] if pending else acc._append_batch(acc.create_builder(), tp)
                if batch._builder.append(timestamp=None, key=out.key, value=out.value,
                                         headers=[]) is None:  # fmt: skip
                    fut = await producer.send(topic, out.value, key=out.key, partition=p)
                    batch = None
            if batch is None:
                self.sends.append(fut)
            else:
                known = batches.get((topic, p))
                if known is not None and known[0] is batch:
                    fut = known[1]
                else:  # shielded: a cancelled flush must not cancel the producer's batch
                    fut = asyncio.shield(batch.future)
                    batches[(topic, p)] = (batch, fut)
                    self.sends.append(fut)
            queue.popleft()
            if topic == control:
                states += 1
                if observe is not None and out.origin_ms is not None:
                    key = id(fut)
                    if key not in origins:
                        origins[key] = []
                        fut.add_done_callback(functools.partial(_observe, observe, origins[key]))
                    origins[key].append(out.origin_ms)
            elif topic == notifications:
                notes += 1
            elif out.dead_letter is not None:
                fut.add_done_callback(
                    functools.partial(self.dead_letters.acknowledged, out.dead_letter)
                )
        if states:
            self.metrics.decisions.labels(kind="state").inc(states)
        if notes:
            self.metrics.decisions.labels(kind="notification").inc(notes)


def _observe(observe: Callable[[float], None], origins: list[int], fut: Any) -> None:
    now = time.time()
    for origin_ms in origins:
        observe(max(0.0, now - origin_ms / 1000))
