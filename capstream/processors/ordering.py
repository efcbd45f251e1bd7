"""Each partition strictly in order from its committed offset (see :meth:`InOrder.check`)."""

from __future__ import annotations

import logging
from typing import Any

import faust

log = logging.getLogger(__name__)


class InOrder:
    """Per (topic, partition), the offset of the next record to process in this ownership."""

    def __init__(self, app: Any, topics: tuple[str, ...]) -> None:
        self._app = app  # its consumer is made on first use, once the worker runs
        self._topics = topics
        self.expected: dict[tuple[str, int], int] = {}
        self._sought: dict[tuple[str, int], int] = {}

    async def restart(self) -> None:
        """A new ownership: expect each assigned partition's committed offset next, or its
        first offset if the group never committed one.

        Without a commit nothing was expected, so the first record handed over was taken,
        whatever its offset. At a group's start the fetcher reads a partition from its first
        offset while the worker is still loading (records it skips, unacked), and the seek to
        the committed offsets leaves a partition without one where the fetcher stands: the
        next record taken was a later one, and the first records were never counted (a full
        chaos run: the first 0.6 s of one partition, 1,445 totals short)."""
        consumer = self._app.consumer
        self.expected.clear()
        self._sought.clear()
        fresh = []
        for tp in consumer.assignment():
            if tp.topic not in self._topics:
                continue
            committed = consumer._committed_offset.get(tp)
            if committed is not None:
                self.expected[(tp.topic, tp.partition)] = committed
            else:
                fresh.append(tp)
        if fresh:
            for tp, first in (await consumer.earliest_offsets(*fresh)).items():
                if first is not None:
                    self.expected[(tp.topic, tp.partition)] = first

    async def check(self, msg: Any) -> bool:
        """True if ``msg`` is the next record of its partition in this ownership.

        Faust resumes the partitions of a new assignment before it seeks them to the
        committed offsets, so records from wherever the fetcher stood can arrive first, and
        the same and earlier ones again after the seek (Faust itself then drops records
        below the highest offset it handed over). Applying a later record first would make
        the earlier ones look like replays to the core's watermarks (dropped: an
        undercount), and a commit after it would skip them. So each partition is taken
        strictly in order from its committed offset: an earlier offset was processed
        already (skipped); a later one means records in between were not handed over: it is
        skipped and the partition sought back to the expected offset (once per offset; the
        records already buffered drain meanwhile). The usage and cap-hit topics are written
        without transactions, so their offsets have no holes; only retention can remove the
        expected offset, and then the partition's first offset is expected instead.
        """
        key = (msg.topic, msg.partition)
        expected = self.expected.get(key)
        offset = msg.offset
        if expected is not None and offset != expected:
            if offset < expected:
                return False
            if self._sought.get(key) != expected:
                self._sought[key] = expected
                consumer = self._app.consumer
                tp = faust.types.TP(msg.topic, msg.partition)
                earliest = (await consumer.earliest_offsets(tp)).get(tp)
                if earliest is not None and expected < earliest:
                    self.expected[key] = expected = earliest
                if offset != expected:
                    log.info("%s[%d]: offset %d before %d: sought back", *key, offset, expected)
                    await consumer.seek(tp, expected)
                    return False
            else:
                return False
        self.expected[key] = offset + 1
        return True
