"""Writes and reads of a Faust table's RocksDB store by explicit partition (no stream event).

The processors keep hot state in memory and write each dirty value once per flush, from a
flusher task rather than inside stream iteration, so ``table[key] = value`` (which needs the
current event) does not fit. Instead each value goes to the partition's RocksDB database and
to the changelog with ``Table.send_changelog(partition, ...)``. Both are needed: the changelog
callback advances the store's persisted offset, so a restart's recovery skips those changelog
records and reads only the local database for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import rocksdict


class TableStore:
    """One Faust table (bytes keys and values, RocksDB store) addressed by partition."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def name(self) -> str:
        return str(self.table.name)

    def _db(self, partition: int) -> Any:
        # The one private call: Faust's RocksDB store has no public per-partition handle.
        return self.table.data._db_for_partition(partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        value = self._db(partition).get(key)
        return bytes(value) if value is not None else None

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of the partition, without Faust's offset bookkeeping key."""
        offset_key = self.table.data.offset_key
        for key, value in self._db(partition).items():
            if key != offset_key:
                yield bytes(key), bytes(value)

    def write(self, partition: int, values: list[tuple[bytes, bytes]]) -> list[Any]:
        """Put ``values`` into the partition's database and send them to the changelog;
        returns the changelog send futures (await them before acking the source offsets)."""
        if not values:
            return []
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in values:
            batch.put(key, value)
        self._db(partition).write(batch)
        send = self.table.send_changelog
        return [send(partition, key, value) for key, value in values]
