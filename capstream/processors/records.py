"""What one usage or cap-hit record does to a partition: decode, apply, dead-letter what is
refused, send misplaced events on. No Kafka here: a record is anything with ``topic``,
``partition``, ``offset``, ``timestamp`` (broker time, s), ``key`` and ``value``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from capstream.core import CapHit, UsageEvent
from capstream.errors import DecodeError
from capstream.processors.dlq import DeadLetters
from capstream.processors.metrics import Metrics
from capstream.processors.options import WorkerOptions
from capstream.processors.outbox import Outbox
from capstream.processors.partition import PartitionState
from capstream.streams.caphit_wire import decode_cap_hit
from capstream.streams.topics import Topics
from capstream.streams.usage_decode import Decoded, UsageDecoder

log = logging.getLogger(__name__)


class RecordHandler:
    """Applies records to their partition's state; everything derived goes to the outbox."""

    def __init__(
        self,
        topics: Topics,
        options: WorkerOptions,
        decoder: UsageDecoder,
        outbox: Outbox,
        dead_letters: DeadLetters,
        metrics: Metrics,
        feed_get: Callable[[int, bytes], bytes | None],
    ) -> None:
        self.topics = topics
        self.options = options
        self.decoder = decoder
        self.outbox = outbox
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.feed_get = feed_get
        self.rerouted = 0

    def usage(self, part: PartitionState, msg: Any, now: int) -> None:
        """Decode one usage record and apply its events; dead-letter what is refused and
        send misplaced events on to their account's partition."""
        topic = self.topics.usage
        try:
            decoded = self.decoder.decode(msg.value, self.latest(msg, now), msg.partition)
        except DecodeError as exc:
            self.dead_letters.send(topic, msg, exc.reason, str(exc))
            return
        for bad in decoded.bad:
            self.dead_letters.send(topic, msg, bad.reason, bad.error, value=bad.raw)
        if decoded.misplaced:
            self._reroute(msg, decoded)
        dups, evicted = part.duplicates, part.scoped_evicted
        n = part.apply(msg.offset, decoded, now, self._refuse(msg))
        self.metrics.events.inc(n)
        if part.duplicates != dups:
            self.metrics.duplicates.inc(part.duplicates - dups)
        if part.scoped_evicted != evicted:
            self.metrics.scoped_evicted.inc(part.scoped_evicted - evicted)

    def cap_hit(self, part: PartitionState, msg: Any, now: int) -> None:
        """Apply one cap hit to its conversation's feed row (on the account's partition)."""
        topic = self.topics.caphits
        try:
            hit: CapHit = decode_cap_hit(
                msg.value, self.options.max_record_bytes, self.latest(msg, now)
            )
        except DecodeError as exc:
            self.dead_letters.send(topic, msg, exc.reason, str(exc))
            return
        p = msg.partition
        home = self.decoder.home_of(hit.account_id)
        if home != p:  # keyed by something else: its feed row lives on the account's partition
            self.outbox.add_reroute(topic, hit.account_id.encode(), msg.value, p, home)
            self.metrics.rerouted.inc()
            return
        row = part.apply_cap_hit(hit, functools.partial(self.feed_get, p))
        self.outbox.add_feed_row(p, row)
        self.metrics.decisions.labels(kind="feed_row").inc()

    def poisoned(self, topic: str, msg: Any, exc: Exception) -> None:
        """Processing ``msg`` raised: dead-letter it, count it, log it, and go on."""
        self.metrics.poison.labels(topic=topic).inc()
        log.error(
            "%s[%d]@%d: processing raised %s; dead-lettered as processing_error",
            topic, msg.partition, msg.offset, type(exc).__name__, exc_info=exc,
        )  # fmt: skip
        self.dead_letters.send(
            topic, msg, "processing_error", f"{type(exc).__name__}: {exc}"[:2000]
        )

    def latest(self, msg: Any, now: int) -> int:
        """The latest event time a record may carry: its broker time (the topic stamps
        LogAppendTime) plus the allowed skew, the bound the sink applies too."""
        ts = msg.timestamp
        stamped = round(ts * 1000) if ts and ts > 0 else now
        return stamped + int(self.options.max_future_skew_s * 1000)

    def _reroute(self, msg: Any, decoded: Decoded) -> None:
        """Events of accounts that live on another partition go there, one event a record,
        keyed by account (counted there once; the sink skips them here too)."""
        for m in decoded.misplaced:
            self.outbox.add_reroute(
                self.topics.usage, m.account_id.encode(), m.raw, msg.partition, m.home
            )
        self.metrics.rerouted.inc(len(decoded.misplaced))
        self.rerouted += len(decoded.misplaced)
        if self.rerouted == len(decoded.misplaced):  # the first ones: say it once
            log.warning(
                "usage record %s[%d]@%d holds events of accounts homed on other partitions; "
                "they are sent on (producers must key by account_id with Kafka's murmur2)",
                msg.topic, msg.partition, msg.offset,
            )  # fmt: skip

    def _refuse(self, msg: Any) -> Any:
        def refuse(event: UsageEvent, index: int, reason: str, error: str) -> None:
            self.dead_letters.send(self.topics.usage, msg, reason, f"event {index}: {error}")

        return refuse
