"""``UsageRecorder``: record usage without blocking; a thread coalesces it per partition."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, NamedTuple

from capstream.core.models import UsageEvent
from capstream.gateway.errors import (
    GatewayError,
    NotDeliveredError,
    QueueFullError,
    RecorderClosedError,
    UsageEventError,
)
from capstream.gateway.pricebook import PriceBook
from capstream.gateway.sender import BatchSender
from capstream.gateway.wire import event_text
from capstream.streams.records import UsageEventRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
Overflow = Literal["drop", "raise"]


class RecorderStats(NamedTuple):
    """Counters of a :class:`UsageRecorder` (events unless named otherwise)."""

    accepted: int
    """taken by ``record()``: each is delivered or, at ``close()``, reported as pending"""
    rejected: int
    """refused by ``record()`` because the queue was full (the overflow policy)"""
    queued: int
    """accepted, waiting for the background thread"""
    in_flight: int
    """handed to Kafka, not yet acknowledged by every in-sync replica"""
    delivered: int
    """acknowledged by Kafka (acks=all)"""
    batches: int
    """``UsageBatch`` records produced"""
    retried: int
    """batches produced again after a delivery error"""


DEFAULT_LINGER_MS = 10.0
"""How long the sender waits to fill a partition's envelope. Each envelope is a record the
processors pay a fixed cost for, so bigger envelopes lower the end-to-end tail: at 5,000
events/s from one producer, event-to-decision p99 was 170-300 ms with 5 ms, 87 ms with
10 ms and 65 ms with 20 ms (p50 26-29, 29 and 33 ms; benchmarks/bench_worker.py)."""


_Conversation = tuple[object, object, object]
"""(account_id, bot_id, conversation_id) as the caller passed them (checked after)."""

DEFAULT_CONVERSATIONS_TRACKED = 100_000
"""Conversations a recorder remembers to derive ``conversation_started`` (oldest forgotten
first; a forgotten one that goes on counts as started once more)."""


class UsageRecorder:
    """Publish usage events to the usage topic without ever blocking the caller.

    ``record()`` validates the event, encodes it and appends it to a bounded in-memory queue.
    A background thread waits ``linger_ms`` for more, groups the queued events by the
    partition Kafka's default partitioner gives their ``account_id`` (murmur2), and produces
    one ``UsageBatch`` record per partition (at most ``max_batch_events`` events each) with
    an idempotent producer (``acks=all``). Records are keyed by the first event's account, so
    any other Kafka client reading the key lands on the same partition.

    Overflow: when ``max_queue`` events are waiting (the brokers are down or slower than the
    callers, and librdkafka's own 64 MB buffer is full), ``record()`` refuses the new event,
    counts it in ``stats.rejected`` and returns False (``on_overflow="drop"``, the default: a
    reply must never wait on accounting) or raises :class:`QueueFullError`
    (``on_overflow="raise"``). Accepted events are never dropped: a failed delivery is
    produced again, and ``flush()`` / ``close()`` wait for every accepted event to be
    acknowledged.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        linger_ms: float = DEFAULT_LINGER_MS,
        max_queue: int = 200_000,
        on_overflow: Overflow = "drop",
        max_batch_events: int = 500,
        producer_name: str = "",
        topic: str | None = None,
        producer_config: Mapping[str, Any] | None = None,
        conversations_tracked: int = DEFAULT_CONVERSATIONS_TRACKED,
        prices: PriceBook | None = None,
    ) -> None:
        if linger_ms < 0 or max_queue < 1 or max_batch_events < 1:
            raise GatewayError("linger_ms must be >= 0, max_queue and max_batch_events >= 1")
        if conversations_tracked < 0:
            raise GatewayError("conversations_tracked must be >= 0 (0: do not derive)")
        # (account, bot, conversation) of the latest conversations recorded, oldest first:
        # conversation_started=None is derived from it (bounded; 0 turns derivation off).
        self.conversations_tracked = conversations_tracked
        self._seen: dict[_Conversation, None] | None = {} if conversations_tracked else None
        self.prices = prices
        """Derives ``credits_micro`` from tokens when ``record()`` is given none."""
        if on_overflow not in ("drop", "raise"):
            raise GatewayError(f"on_overflow must be 'drop' or 'raise', not {on_overflow!r}")
        self.topic = topic or Topics(settings.topic_prefix).usage
        self.max_queue = max_queue
        self.on_overflow = on_overflow
        config: dict[str, Any] = {
            **settings.librdkafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 2,
            "compression.type": "lz4",
            # Bounds what waits inside librdkafka while the brokers are away (default 1 GB).
            "queue.buffering.max.kbytes": 65_536,
            "allow.auto.create.topics": False,
            "log_level": 3,
            "logger": logging.getLogger("capstream.gateway.librdkafka"),
            **(producer_config or {}),
        }
        self._closed = False
        self._lock = threading.Lock()
        self._rejected = 0
        self._sender = BatchSender(
            config,
            self.topic,
            producer_name=producer_name,
            linger_s=linger_ms / 1000,
            max_batch_events=max_batch_events,
        )
        self._queue = self._sender.queue

    # -- the caller's side -----------------------------------------------------------------

    def record(
        self,
        event: UsageEvent | UsageEventRecord | None = None,
        /,
        *,
        event_id: str | None = None,
        account_id: str | None = None,
        bot_id: str | None = None,
        conversation_id: str | None = None,
        category: str | None = None,
        model: str | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        messages: int = 0,
        conversation_started: bool | None = None,
        credits_micro: int | None = None,
        occurred_at_ms: int | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> bool:
        """Queue one usage event; True if accepted. Never blocks.

        Pass a :class:`~capstream.core.models.UsageEvent` (or ``UsageEventRecord``) or the
        fields by name. ``occurred_at_ms`` defaults to now. ``conversation_started`` (what
        conversations policies count): True on a conversation's first event; left out
        (None), the recorder derives it: True for the first event of an (account, bot,
        conversation) it has not seen among the last ``conversations_tracked``.
        ``credits_micro`` left out (None): derived from ``model``, ``category`` and the
        tokens with the recorder's ``prices`` (``gateway/pricebook.py``); 0 when it has
        none or the model is unpriced (counted in ``prices.stats.unpriced``). Raises
        :class:`~capstream.gateway.errors.UsageEventError` naming a bad field.
        """
        if event is not None:
            return self.record(
                event_id=event.event_id,
                account_id=event.account_id,
                bot_id=event.bot_id,
                conversation_id=event.conversation_id,
                category=event.category,
                model=event.model,
                tokens_in=event.tokens_in,
                tokens_out=event.tokens_out,
                messages=event.messages,
                conversation_started=event.conversation_started,
                credits_micro=event.credits_micro,
                occurred_at_ms=event.occurred_at_ms,
                attributes=event.attributes,
            )
        if credits_micro is None:
            credits_micro = self._derived_credits(
                account_id, model, category, tokens_in, tokens_out
            )
        claimed: _Conversation | None = None
        if conversation_started is None:
            seen = self._seen
            conversation_started = False
            if seen is not None:
                key = (account_id, bot_id, conversation_id)
                try:
                    fresh = key not in seen
                except TypeError:  # an unhashable id: event_text names the bad field
                    fresh = False
                if fresh:
                    conversation_started = self._claim(seen, key)
                    if conversation_started:
                        claimed = key
        try:
            body = event_text(
                event_id,
                account_id,
                bot_id,
                conversation_id,
                category,
                model,
                tokens_in,
                tokens_out,
                messages,
                conversation_started,
                credits_micro,
                occurred_at_ms,
                attributes,
            )
        except UsageEventError:
            if claimed is not None:  # not recorded: its next event is still the first
                self._forget(claimed)
            raise
        queue = self._queue
        if len(queue) >= self.max_queue or self._closed:
            if claimed is not None:
                self._forget(claimed)
            return self._refuse()
        queue.append((account_id, body))  # type: ignore[arg-type]  # validated above
        sender = self._sender
        if sender.idle:  # cleared here, so callers racing ahead of the thread wake it once
            sender.idle = False
            sender.wake.set()
        return True

    def _derived_credits(
        self, account_id: object, model: object, category: object, tin: object, tout: object
    ) -> int:
        """The credits of an event given none: from the price book, else 0."""
        prices = self.prices
        if prices is None:
            return 0
        if not (
            type(account_id) is str
            and type(model) is str
            and type(category) is str
            and type(tin) is int
            and type(tout) is int
            and tin >= 0
            and tout >= 0
        ):
            return 0  # event_text names the bad field
        return prices.credits(account_id, model, category, tin, tout) or 0

    def _forget(self, key: _Conversation) -> None:
        if self._seen is not None:
            self._seen.pop(key, None)

    def _claim(self, seen: dict[_Conversation, None], key: _Conversation) -> bool:
        """Mark ``key`` seen; True if this call did (threads racing on one key: one wins)."""
        with self._lock:
            if key in seen:
                return False
            seen[key] = None
            if len(seen) > self.conversations_tracked:
                del seen[next(iter(seen))]  # the oldest first seen
        return True

    def _refuse(self) -> bool:
        if self._closed:
            raise RecorderClosedError("this UsageRecorder is closed; create a new one to record")
        with self._lock:
            self._rejected += 1
            rejected = self._rejected
        if rejected == 1 or rejected % 10_000 == 0:
            log.warning(
                "usage queue full (%d events waiting for Kafka): %d events refused so far",
                len(self._queue),
                rejected,
            )
        if self.on_overflow == "raise":
            raise QueueFullError(
                f"{len(self._queue)} usage events are waiting for Kafka (max_queue="
                f"{self.max_queue}); this event was not recorded. Check the brokers, retry "
                "later, or raise max_queue."
            )
        return False

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until Kafka acknowledged every event accepted so far; return how many are not.

        0 means everything recorded before this call is durably in the usage topic.
        """
        if self._closed:
            raise RecorderClosedError("this UsageRecorder is closed")
        return self._wait(timeout, close=False)

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then stop the background thread. Raises :class:`NotDeliveredError` if the
        brokers did not acknowledge every accepted event within ``timeout`` (the thread keeps
        trying; call ``close()`` again)."""
        if not self._sender.thread.is_alive():
            return
        self._closed = True
        pending = self._wait(timeout, close=True)
        if pending:
            raise NotDeliveredError(pending, timeout)
        self._sender.thread.join(timeout=5)

    def _wait(self, timeout: float, *, close: bool) -> int:
        result: list[int] = []
        finished = threading.Event()

        def done(pending: int) -> None:
            result.append(pending)
            finished.set()

        self.enqueue_marker(timeout, done, close=close)
        # The thread answers by the deadline unless a broker call holds it a little longer.
        if not finished.wait(timeout + 1):
            return self.stats.queued + self.stats.in_flight
        return result[0]

    def enqueue_marker(self, timeout: float, done: Callable[[int], None], *, close: bool) -> None:
        """Ask the thread to call ``done(pending)`` once everything queued before is acked
        (``pending == 0``) or ``timeout`` passed. Used by ``flush``/``close`` and the asyncio
        wrapper."""
        self._sender.add_marker(timeout, done, close=close)

    @property
    def stats(self) -> RecorderStats:
        """A snapshot of the counters."""
        sender = self._sender
        queued = max(0, len(self._queue) - sender.markers)
        return RecorderStats(
            accepted=sender.drained + queued,
            rejected=self._rejected,
            queued=queued,
            in_flight=sender.in_flight,
            delivered=sender.delivered,
            batches=sender.batches,
            retried=sender.retried,
        )

    def __enter__(self) -> UsageRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the background thread -------------------------------------------------------------
