"""The worker's clocks: the wall-clock deadline timer and the membership watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping

from capstream.core.models import NEVER
from capstream.processors.fencing import Membership
from capstream.processors.metrics import Metrics
from capstream.processors.partition import PartitionState

WATCH_S = 0.25
"""The watchdog looks at the membership lease and the event loop's stalls this often."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Timers:
    """Wall-clock mode: run ``expire`` at the earliest deadline of any held account and
    publish what it changes (block ends, local midnight, the 1st of the month, throttles)."""

    def __init__(
        self,
        partitions: Mapping[int, PartitionState],
        metrics: Metrics,
        drain: Callable[[], Awaitable[None]],
        stopping: Callable[[], bool],
        regrant: Callable[[int], bool],
    ) -> None:
        self.partitions = partitions
        self._regrant = regrant
        self.metrics = metrics
        self._drain = drain
        self._stopping = stopping
        self.due = NEVER
        """The deadline the timer sleeps until (a sooner one wakes it: :meth:`poke`)."""
        self._wake: asyncio.Event | None = None

    def poke(self) -> None:
        """Look at the deadlines again now (a sooner one, or policies changed)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        self._wake = wake = asyncio.Event()
        while True:
            now = wall_ms()
            due = min(
                (d for p in self.partitions.values() if (d := p.next_deadline) is not None),
                default=None,
            )
            # a credit grant's period ended or it expired: the accounts are decided again
            if self._regrant(now) and not self._stopping():
                await self._drain()
            if due is not None and due <= now and not self._stopping():
                ran = sum(p.tick(now) for p in list(self.partitions.values()))
                self.metrics.timers.inc(ran)
                await self._drain()
                continue
            self.due = due if due is not None else NEVER
            wait = 1.0 if due is None else min(1.0, (due - now) / 1000)
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)


async def watchdog(
    membership: Membership,
    owned_since: Callable[[], float | None],
    lapse: Callable[[str], None],
) -> None:
    """Treat a lapse of the membership lease, or a stall of the event loop longer than the
    lease's span, as a revoke at once (the writes are refused anyway). ``owned_since`` is
    the monotonic start of the current ownership, None while nothing is owned."""
    m = membership
    last = time.monotonic()
    while True:
        await asyncio.sleep(WATCH_S)
        now = time.monotonic()
        stalled, since, last = now - last - WATCH_S, last, now
        start = owned_since()
        if start is None or since < start:
            continue
        if stalled > m.session_timeout_s - m.margin_s:
            lapse(f"the event loop stalled for {stalled:.1f} s")
        elif not m.valid():
            lapse("no heartbeat answered within the session timeout")
