"""Events on the wrong partition: each account's home, and the events to send there.

A producer that does not key usage records by account (or mixes accounts of several
partitions in one record) puts events where their account's state does not live. The
worker and the sink set those apart (:meth:`Homes.split`): they are neither counted nor
stored where they landed, and the worker sends each on to its home partition as a
one-event record.
"""

from __future__ import annotations

from capstream.core.models import UsageEvent
from capstream.streams.partitioner import partition_for
from capstream.streams.usage_results import Decoded, Misplaced
from capstream.streams.usage_wire import batch_header, encode_batch, event_bodies

_HOMES_LIMIT = 100_000


class Homes:
    """The home partition of each account seen (a bounded cache of murmur2 results)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._homes: dict[str, int] = {}

    def home_of(self, account_id: str) -> int:
        """The partition of ``account_id`` (Kafka's murmur2 of its UTF-8 bytes)."""
        homes = self._homes
        home = homes.get(account_id)
        if home is None:
            if len(homes) >= _HOMES_LIMIT:
                homes.clear()
            home = homes[account_id] = partition_for(account_id.encode(), self.partitions)
        return home

    def split(self, decoded: Decoded, value: bytes, partition: int) -> Decoded:
        """Set apart the events of ``value`` whose account's home is not ``partition``."""
        homes = self._homes
        events = decoded.events
        n = len(events)
        i = 0
        while i < n:
            account_id = events[i].account_id
            home = homes.get(account_id)
            if home is None:
                home = self.home_of(account_id)
            if home != partition:
                break
            i += 1
        if i == n:  # the common case: every event is at home
            return decoded
        indexes = decoded.indexes if decoded.indexes is not None else list(range(n))
        kept: list[UsageEvent] = []
        kept_indexes: list[int] = []
        away: list[tuple[int, int, UsageEvent]] = []
        for event, index in zip(events, indexes, strict=True):
            home = self.home_of(event.account_id)
            if home == partition:
                kept.append(event)
                kept_indexes.append(index)
            else:
                away.append((index, home, event))
        bodies = event_bodies(value)
        batch_id, producer, sent_at = batch_header(value)
        misplaced = tuple(
            Misplaced(
                index,
                home,
                event.account_id,
                encode_batch(batch_id, producer, sent_at, [bodies[index]]),
            )
            for index, home, event in away
        )
        return Decoded(kept, kept_indexes, decoded.bad, misplaced)
