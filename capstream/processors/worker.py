"""``capstream worker``: create the topics, start the metrics endpoint, run the Faust worker.

SIGTERM and Ctrl-C stop it cleanly: stop taking records, write and ack what was processed,
commit, then stop Faust. A kill -9 loses nothing either: the restart recovers the tables from
their changelogs and replays from the last commit, and replays are no-ops.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import logging
import signal
from typing import Any

import faust

from capstream.errors import CapstreamError
from capstream.processors.app import Processors
from capstream.processors.options import WorkerOptions
from capstream.streams.settings import Settings
from capstream.streams.topics import create_topics

log = logging.getLogger(__name__)


class WorkerCrashedError(CapstreamError):
    """The worker stopped because of an error (``capstream worker`` exits 1 and says why);
    a supervisor restarts it, and the restart replays from the last commit."""


class _Worker(faust.Worker):
    """Faust's worker with a shutdown that flushes the processors' state first."""

    def __init__(self, processors: Processors, **kw: Any) -> None:
        self.processors = processors
        self._stopping_cleanly = False
        self._stop_task: asyncio.Future[None] | None = None
        super().__init__(processors.app, **kw)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # Faust's default installs a terminal spinner and sets the root logger to DEBUG, so
        # every debug line of aiokafka is formatted and handled (measured: ~5% of the CPU).
        logger.setLevel(level or logging.WARNING)

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self._graceful, sig)

    def _graceful(self, sig: signal.Signals) -> None:
        if self._stopping_cleanly:
            return
        self._stopping_cleanly = True
        log.info("%s: flushing state, then stopping", sig.name)
        self._stop_task = asyncio.ensure_future(self._stop_after_flush(), loop=self.loop)

    async def _stop_after_flush(self) -> None:
        await self.processors.shutdown()
        await self.stop()
        starting = getattr(self, "_starting_fut", None)
        if starting is not None and not starting.done():
            starting.cancel()


GC_THRESHOLDS = (5_000, 4, 1_000)
"""A young collection scans every container allocated since the last one and still alive, a
middle collection every survivor of the last four: ~1 us each on this machine, more when
the host is busy. Rarer young collections than the default (every 700 allocations, which
rescanned a record's decoded events again and again: ~12% more CPU per event), but small
enough that no pause stands out in the latency tail: at most ~5,000 young or ~20,000 middle
objects, 5-25 ms. (At 50,000 / 50 a young pause was 20-60 ms, and a middle one would have
scanned 2.5 million objects: seconds.) The state adds few containers per event (see
``loop_suspected``), and the old generation is collected rarely: usage state is long-lived
and holds no cycles."""


def run_worker(settings: Settings, options: WorkerOptions) -> None:
    """Run one processors worker in the foreground until SIGTERM/SIGINT."""
    if options.create_topics:
        create_topics(settings, processors=options.app_id(settings.topic_prefix))
    gc.set_threshold(*GC_THRESHOLDS)
    processors = Processors(settings, options)
    processors.metrics.watch_gc()
    server = None
    if options.metrics_port is not None:
        server, _ = processors.metrics.serve(
            options.metrics_host, options.metrics_port, settings.data_dir
        )
    worker = _Worker(processors, loglevel=options.loglevel, quiet=True, redirect_stdouts=False)
    profile = cProfile.Profile() if options.profile_to is not None else None
    try:
        if profile is not None:
            profile.enable()
        worker.execute_from_commandline()
    except SystemExit as exc:
        # Faust ends every run with SystemExit: 0 after a clean stop, 1 after a crash. A
        # crash must reach the supervisor as a failure, with its reason on stderr.
        reason = worker.crash_reason or processors.failure
        if exc.code not in (None, 0) or reason is not None:
            raise WorkerCrashedError(
                f"the worker stopped on an error: {reason!r}"
                if reason is not None
                else f"the worker stopped with status {exc.code}"
            ) from reason
    finally:
        if profile is not None and options.profile_to is not None:
            profile.disable()
            profile.dump_stats(options.profile_to)
        if server is not None:
            server.shutdown()
