"""Each usage partition is processed strictly in order from where the group stands.

Found by a full chaos run: at the group's start no offset was committed yet, so nothing was
expected and the first record handed over was taken whatever its offset; the fetcher had
read the partition's first records while the worker was still loading, so the first 0.6 s of
one partition were never counted (1,445 day and month totals short).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from capstream.processors.ordering import InOrder

USAGE, CHANGELOG = "p.usage", "p.processors-accounts-changelog"


class Consumer:
    def __init__(self, committed: dict[TP, int], earliest: dict[TP, int]) -> None:
        self._committed_offset = committed
        self._earliest = earliest
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(self._earliest)

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self._earliest[tp] for tp in tps}

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def _taken(in_order: InOrder, partition: int, offsets: list[int]) -> list[int]:
    async def run() -> list[int]:
        msgs = [SimpleNamespace(topic=USAGE, partition=partition, offset=o) for o in offsets]
        return [m.offset for m in msgs if await in_order.check(m)]

    return asyncio.run(run())


def _started(consumer: Consumer) -> InOrder:
    in_order = InOrder(SimpleNamespace(consumer=consumer), (USAGE,))
    asyncio.run(in_order.restart())
    return in_order


def test_a_partition_never_committed_is_taken_from_its_first_offset() -> None:
    consumer = Consumer({}, {TP(USAGE, 1): 0, TP(CHANGELOG, 1): 0})
    in_order = _started(consumer)
    # The fetcher stood at offset 7 when the worker became owner: 0-6 are read again first.
    assert _taken(in_order, 1, [7, 8, 0, 1, 2]) == [0, 1, 2]
    assert consumer.seeks == [(TP(USAGE, 1), 0)]
    assert (CHANGELOG, 1) not in in_order.expected  # only the topics the agents read


def test_a_committed_partition_is_taken_from_its_commit() -> None:
    consumer = Consumer({TP(USAGE, 0): 40}, {TP(USAGE, 0): 0})
    in_order = _started(consumer)
    assert _taken(in_order, 0, [38, 39, 40, 41]) == [40, 41]  # earlier ones: processed
    assert consumer.seeks == []


def test_a_partition_whose_start_retention_removed_is_taken_from_its_new_start() -> None:
    consumer = Consumer({}, {TP(USAGE, 2): 5_000})
    in_order = _started(consumer)
    assert _taken(in_order, 2, [5_000, 5_001]) == [5_000, 5_001]
