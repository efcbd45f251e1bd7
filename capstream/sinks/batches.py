"""Per-(topic, partition) batches with deterministic dedup tokens, and crash recovery pins."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from capstream.sinks.frames import Body
from capstream.sinks.tables import SinkTable


@dataclass(frozen=True, slots=True)
class Intent:
    """The last batch a sink announced for a partition before inserting it.

    Written before the insert, so after a crash the batch that may or may not have landed
    is known exactly: its offsets are collected again and inserted with the same token
    (ClickHouse drops it if it landed). Records before ``first_offset`` are known written.
    """

    first_offset: int
    last_offset: int
    token: str


@dataclass(slots=True)
class Batch:
    """Consecutive records of one (topic, partition), written with one insert."""

    table: SinkTable
    partition: int
    first_offset: int
    last_offset: int
    pinned_token: str | None = None
    offsets: list[int] = field(default_factory=list)
    bodies: list[Body] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    nbytes: int = 0
    opened_at: float = field(default_factory=time.monotonic)
    announced: bool = False
    """Its intent is already recorded (``Storage.announce``); ``write`` need not repeat it."""

    @property
    def topic(self) -> str:
        return self.table.topic

    @property
    def token(self) -> str:
        """``topic:partition:first-last``: the same records always get the same token."""
        if self.pinned_token is not None:
            return self.pinned_token
        return f"{self.table.topic}:{self.partition}:{self.first_offset}-{self.last_offset}"

    @property
    def intent(self) -> Intent:
        return Intent(self.first_offset, self.last_offset, self.token)

    def __len__(self) -> int:
        return len(self.bodies)

    def add(self, offset: int, key: bytes | None, value: bytes, body: Body, ts_ms: int) -> None:
        self.offsets.append(offset)
        self.keys.append(key)
        self.values.append(value)
        self.bodies.append(body)
        self.timestamps.append(ts_ms)
        self.nbytes += len(body)
        if offset > self.last_offset:
            self.last_offset = offset

    def cover(self, offset: int) -> None:
        """Extend the batch over a record that has no body (dead-lettered or tombstone)."""
        if offset > self.last_offset:
            self.last_offset = offset


class PartitionBuffer:
    """The open batch of one partition and, after a restart, the pinned recovery range."""

    def __init__(self, table: SinkTable, partition: int, intent: Intent | None) -> None:
        self.table = table
        self.partition = partition
        self.pin = intent
        self.open: Batch | None = None
        self.skipped = 0

    def _new(self, offset: int) -> Batch:
        if self.pin is not None and self.pin.first_offset <= offset <= self.pin.last_offset:
            return Batch(
                self.table,
                self.partition,
                self.pin.first_offset,
                self.pin.last_offset,
                pinned_token=self.pin.token,
            )
        return Batch(self.table, self.partition, offset, offset)

    def admit(self, offset: int) -> tuple[bool, list[Batch]]:
        """Where a record at ``offset`` goes: ``(keep?, batches sealed to make room)``.

        Records below the pinned range were written before the restart and are skipped;
        a record past the pinned range seals the pinned batch first.
        """
        sealed: list[Batch] = []
        pin = self.pin
        if pin is not None:
            if offset < pin.first_offset:
                self.skipped += 1
                return False, sealed
            if offset > pin.last_offset:
                if self.open is not None and self.open.pinned_token is not None:
                    sealed.append(self.open)
                    self.open = None
                self.pin = None
        if self.open is None:
            self.open = self._new(offset)
        return True, sealed

    def after_record(self, offset: int) -> Batch | None:
        """Seal the pinned batch as soon as its last offset has been read."""
        batch = self.open
        if batch is not None and batch.pinned_token is not None and offset >= batch.last_offset:
            self.open = None
            self.pin = None
            return batch
        return None

    def seal_due(
        self, now: float, max_bytes: int, max_age: float, position: int | None
    ) -> Batch | None:
        """The open batch, if it is full or old enough to be written now.

        A pinned batch waits until every record of its range has been read (``position``, the
        next offset to read, is past it), whatever its size or age.
        """
        batch = self.open
        if batch is None:
            return None
        if batch.pinned_token is not None:
            if position is None or position <= batch.last_offset:
                return None
        elif batch.nbytes < max_bytes and now - batch.opened_at < max_age:
            return None
        self.open = None
        if batch.pinned_token is not None:
            self.pin = None
        return batch

    def seal_all(self, position: int | None) -> Batch | None:
        """The open batch regardless of size or age (shutdown, revocation).

        A pinned batch not yet read to its end is dropped, not written: written short under
        the old token, its missing records would later be deduplicated away. Its offsets are
        uncommitted, so whoever reads the partition next collects the whole range again.
        """
        batch, self.open = self.open, None
        if batch is not None and batch.pinned_token is not None:
            if position is None or position <= batch.last_offset:
                return None
            self.pin = None
        return batch
