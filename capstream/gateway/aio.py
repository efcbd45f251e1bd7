"""``AsyncUsageRecorder``: the usage recorder for asyncio code (awaitable flush and close)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from capstream.gateway.errors import NotDeliveredError, RecorderClosedError
from capstream.gateway.recorder import RecorderStats, UsageRecorder
from capstream.streams.settings import Settings


class AsyncUsageRecorder:
    """A :class:`UsageRecorder` whose ``flush()`` and ``close()`` are awaited, not blocked on.

    ``record()`` is the recorder's own (it never blocks, so it is safe on the event loop).
    Same arguments as :class:`UsageRecorder`; ``async with`` closes it.
    """

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.recorder = UsageRecorder(settings, **options)
        self.record = self.recorder.record

    # The deadline travels to the recorder's thread, so it is a value, not asyncio.timeout.
    async def flush(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait (without blocking the loop) until Kafka acknowledged everything recorded so
        far; returns how many events are still unacknowledged."""
        if self.recorder._closed:
            raise RecorderClosedError("this recorder is closed")
        return await self._marker(timeout, close=False)

    async def close(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Flush and stop; raises :class:`NotDeliveredError` if Kafka did not confirm all."""
        if not self.recorder._sender.thread.is_alive():
            return
        self.recorder._closed = True
        pending = await self._marker(timeout, close=True)
        if pending:
            raise NotDeliveredError(pending, timeout)
        await asyncio.to_thread(self.recorder._sender.thread.join, 5)

    async def _marker(self, timeout: float, *, close: bool) -> int:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def done(pending: int) -> None:
            loop.call_soon_threadsafe(_resolve, future, pending)

        self.recorder.enqueue_marker(timeout, done, close=close)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout + 1)
        except TimeoutError:
            stats = self.recorder.stats
            return stats.queued + stats.in_flight

    @property
    def stats(self) -> RecorderStats:
        return self.recorder.stats

    async def __aenter__(self) -> AsyncUsageRecorder:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _resolve(future: asyncio.Future[int], pending: int) -> None:
    if not future.done():
        future.set_result(pending)
