"""The sink's storage port (``write(batch)``), poison-record isolation, and an in-memory store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from capstream.sinks.batches import Batch, Intent
from capstream.sinks.store import RowsRejectedError, StoreUnavailableError

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the store refused; the rest of its batch was written."""

    index: int
    offset: int
    error: str


class Storage(Protocol):
    """Where batches land. ``write`` is all-or-retry: it returns only once every record of
    the batch is stored or rejected, and raises ``StoreUnavailableError`` otherwise (the caller
    retries the same batch, with the same token)."""

    def write(self, batch: Batch) -> list[Rejected]: ...

    def announce(self, batches: Sequence[Batch]) -> None:
        """Record the intents of several batches in one go (each the next batch of its own
        partition) and mark them ``announced``; raises ``StoreUnavailableError``."""
        ...

    def intents(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Intent]: ...

    def close(self) -> None: ...


InsertRange = Callable[[int, int, str], None]
"""Insert records ``[lo, hi)`` of a batch under a dedup token; raises ``RowsRejectedError``."""


def insert_isolating(insert: InsertRange, batch: Batch) -> list[Rejected]:
    """Insert the whole batch; if the store rejects the data, split it in halves until the
    rejected records are alone. Sub-ranges get tokens derived from the batch token and their
    bounds, so a retry after a crash reproduces them and the store drops repeats."""
    rejected: list[Rejected] = []

    def attempt(lo: int, hi: int, token: str) -> None:
        try:
            insert(lo, hi, token)
        except RowsRejectedError as exc:
            if hi - lo == 1:
                rejected.append(Rejected(lo, batch.offsets[lo], str(exc)))
                return
            mid = (lo + hi) // 2
            attempt(lo, mid, f"{batch.token}/{lo}-{mid}")
            attempt(mid, hi, f"{batch.token}/{mid}-{hi}")

    if len(batch):
        attempt(0, len(batch), batch.token)
    return rejected


@dataclass
class MemoryStorage:
    """A ``Storage`` in memory, with ClickHouse's token deduplication, for tests.

    ``poison`` marks record values the store rejects; ``outage`` makes every call raise
    ``StoreUnavailableError`` until it is cleared; ``fail_next`` fails that many writes.
    """

    poison: Callable[[bytes], bool] = lambda value: False
    outage: bool = False
    fail_next: int = 0
    rows: dict[str, list[bytes]] = field(default_factory=dict)
    tokens: dict[str, set[str]] = field(default_factory=dict)
    saved_intents: dict[TopicPartition, Intent] = field(default_factory=dict)
    writes: list[Batch] = field(default_factory=list)
    inserts: int = 0
    announcements: int = 0
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _check(self) -> None:
        if self.outage:
            raise StoreUnavailableError("ClickHouse is down (simulated)")
        if self.fail_next > 0:
            self.fail_next -= 1
            raise StoreUnavailableError("ClickHouse timed out (simulated)")

    def write(self, batch: Batch) -> list[Rejected]:
        with self._lock:
            self._check()
            self.writes.append(batch)
            if not len(batch):
                return []
            if not batch.announced:
                self.saved_intents[(batch.topic, batch.partition)] = batch.intent

            def insert(lo: int, hi: int, token: str) -> None:
                self.inserts += 1
                seen = self.tokens.setdefault(batch.table.table, set())
                if token in seen:
                    return
                values = batch.values[lo:hi]
                if any(self.poison(v) for v in values):
                    raise RowsRejectedError("Code: 469. constraint violated (simulated)")
                seen.add(token)
                self.rows.setdefault(batch.table.table, []).extend(values)

            return insert_isolating(insert, batch)

    def announce(self, batches: Sequence[Batch]) -> None:
        with self._lock:
            self._check()
            self.announcements += 1
            for batch in batches:
                self.saved_intents[(batch.topic, batch.partition)] = batch.intent
                batch.announced = True

    def intents(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Intent]:
        with self._lock:
            self._check()
            return {tp: self.saved_intents[tp] for tp in partitions if tp in self.saved_intents}

    def close(self) -> None:
        self.closed = True
