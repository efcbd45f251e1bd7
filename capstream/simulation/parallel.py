"""The two sides on two cores: the draft side in a second process.

The two sides of a simulation share nothing but the events (each has its own account
state, ledger, counters, timeline and charts), so the draft side can run in another
process while this one reads the events and runs the current side, with every decision
unchanged (``run.Side`` and ``run.replay`` in both processes).

This process (the one the caller runs ``simulate`` in) reads each chunk through the column
port, as one process does (the embedded chDB store is open in one process only), and ships
its columns to the draft process (``marshal``: ~0.15 µs per event to pack, ~0.3 µs to
unpack; pickle cost 0.5 and 1.7 µs), then runs the current side on the same chunk. A sender
thread writes to the pipe, so this process does not wait while the other finishes its
previous chunk. Bounded: besides the reader's chunks (``source``), one packed chunk queued,
one being written, one being replayed over there.

The draft process reports after each chunk (progress is the events both sides have
replayed), then its side's report, built there as it is built here; the result is merged
exactly as a single process builds it. Its errors reach the caller as
``SimulationFailedError``; a process that dies (killed, out of memory) fails the simulation at
the next chunk or while its report is awaited, never hangs it. When the caller stops (an
exception, e.g. ``progress`` raising, or Ctrl-C), the draft process is terminated before
``simulate`` returns.

Used (``use_two``) when the range holds more than ``MIN_EVENTS`` events, at least two CPUs
are usable, the store port has the column form, the draft configuration was built from
records (``configs``) and no effect hook is asked for (hooks run in this process).
Otherwise one process runs both sides.
"""

from __future__ import annotations

import contextlib
import json
import logging
import marshal
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from capstream.core import Effects
from capstream.errors import CapstreamError
from capstream.simulation.draft import Config, config_of
from capstream.simulation.run import Chart, Side, replay, sample_every
from capstream.simulation.source import ColumnChunk, EventSource, Plan
from capstream.streams.records import PolicyRecord, TenantSettingsRecord

log = logging.getLogger(__name__)

MIN_EVENTS = 200_000
"""Up to this many events are replayed in one process: starting the second (a fresh
interpreter that imports the core, ~0.5 s of CPU) costs about what it saves there; and the
API answers such ranges within the request (``SYNC_EVENTS``), without starting a process."""
_END = b""
"""Sent after the last chunk: the draft process reports its side."""
_POLL_S = 0.2
"""How often a wait checks that the draft process still runs."""


class SimulationFailedError(CapstreamError):
    """The draft side's process failed or died: the simulation has no result."""


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def why_not(
    source: EventSource, drafted: Config, hooks: dict[str, Callable[[Effects], None]]
) -> str | None:
    """Why the draft side cannot run in a second process, or None if it can."""
    if getattr(source, "columns", None) is None:  # (the bench's in-memory source has none)
        return "the store port has no column form (rows are not shipped)"
    if drafted.records is None:
        return "the draft configuration was not built from records (configs)"
    if hooks:
        return "effect hooks run in this process"
    return None


def use_two(
    source: EventSource,
    drafted: Config,
    hooks: dict[str, Callable[[Effects], None]],
    plan: Plan,
) -> bool:
    """Is the draft side run in a second process (``simulate``'s default)?"""
    return (
        plan.total > MIN_EVENTS and usable_cpus() >= 2 and why_not(source, drafted, hooks) is None
    )


def check_usable(
    source: EventSource, drafted: Config, hooks: dict[str, Callable[[Effects], None]]
) -> None:
    reason = why_not(source, drafted, hooks)
    if reason is not None:
        raise ValueError(f"the draft side cannot run in a second process: {reason}")


@dataclass(frozen=True, slots=True)
class DraftSpec:
    """What the draft process needs to build its side (picklable: records, not the core's
    objects)."""

    account_id: str
    records: tuple[tuple[PolicyRecord, ...], TenantSettingsRecord]
    charts: tuple[tuple[Any, ...], ...]
    drop: bool
    from_ms: int
    to_ms: int
    every: int


def _chart_args(c: Chart) -> tuple[Any, ...]:
    return (
        c.label, c.kind, c.threshold, c.series, c.window_ms, c.scope, c.bot_id, c.period,
        c.policy_id,
    )  # fmt: skip


def pack(columns: Sequence[Sequence[Any]]) -> bytes:
    """A chunk's columns as bytes (``marshal``: lists of str, int, bool and the attributes'
    dicts; pickle for anything else)."""
    cols = [c if isinstance(c, list) else list(c) for c in columns]
    try:
        return b"m" + marshal.dumps(cols)
    except ValueError:
        return b"p" + pickle.dumps(cols, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(blob: bytes) -> list[Sequence[Any]]:
    data = memoryview(blob)[1:]
    cols: list[Sequence[Any]] = marshal.loads(data) if blob[:1] == b"m" else pickle.loads(data)
    return cols


def run_two(
    source: EventSource,
    plan: Plan,
    cur: Side,
    drafted: Config,
    charts: list[Chart],
    *,
    drop: bool,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """Replay ``source``: ``cur`` here, the draft side in a second process; the draft side's
    report."""
    assert drafted.records is not None
    every = sample_every(source)
    spec = DraftSpec(
        source.account_id, drafted.records, tuple(_chart_args(c) for c in charts), drop,
        source.from_ms, source.to_ms, every,
    )  # fmt: skip
    total = plan.total

    def report(done: int) -> None:
        if progress is not None:
            progress(done, total)

    other = DraftProcess(spec)
    try:
        report(0)
        sides = [cur]
        next_sample = source.from_ms
        done = 0
        for chunk in source.chunks(plan):
            if not isinstance(chunk, ColumnChunk):
                raise TypeError("the second process takes chunks of the column port")
            other.send(chunk.columns)
            next_sample = replay(sides, chunk, next_sample, every)
            done += len(chunk)
            other.poll()
            report(min(done, other.done))
        return other.finish(report)
    finally:
        other.close()


class DraftProcess:
    """The draft side's process, its chunks pipe (and the thread writing to it) and its
    replies pipe."""

    def __init__(self, spec: DraftSpec) -> None:
        # A fresh interpreter (not fork: the caller has threads and a store open; not
        # multiprocessing's spawn: it imports the caller's main script again), with this
        # process's import path; two pipes, their other ends passed to it.
        chunks_r, chunks_w = os.pipe()
        replies_r, replies_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(chunks_r),
                 str(replies_w)],
                pass_fds=(chunks_r, replies_w), stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except BaseException:
            for fd in (chunks_r, chunks_w, replies_r, replies_w):
                os.close(fd)
            raise
        os.close(chunks_r)  # only the child holds these ends now: its death is EOF / EPIPE here
        os.close(replies_w)
        self._chunks = Connection(chunks_w, readable=False)
        self._replies = Connection(replies_r, writable=False)
        self.done = 0
        """Events the draft side has replayed."""
        self._out: queue.Queue[bytes] = queue.Queue(maxsize=1)
        # the spec first, written by the sender thread: this process reads and replays
        # while the other one starts (~0.5 s)
        self._out.put(pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL))
        self._stop = threading.Event()
        self._send_error: BaseException | None = None
        self._finished = False
        self._sender = threading.Thread(target=self._write, name="simulation-ship", daemon=True)
        self._sender.start()

    # -- this process's side -----------------------------------------------------------------

    def send(self, columns: Sequence[Sequence[Any]]) -> None:
        """Queue a chunk for the draft process (waits while one is already queued)."""
        self._put(pack(columns))

    def poll(self) -> None:
        """Read the replies so far without waiting (``done``)."""
        while self._replies.poll(0):
            if self._reply() is not None:
                raise AssertionError("the draft process reported before the end")

    def finish(self, progress: Callable[[int], None]) -> dict[str, Any]:
        """Tell the draft process the events are all sent; its side's report (``progress``
        called as it catches up)."""
        self._put(_END)
        while True:
            if not self._replies.poll(_POLL_S):
                if not self.alive() and not self._replies.poll(0):
                    raise self._died()
                continue
            result = self._reply()
            if result is not None:
                self._finished = True
                return result
            progress(self.done)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop the draft process (at once unless it has reported) and release the pipes."""
        self._stop.set()
        if self._finished:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sender.join(5)
        self._chunks.close()
        self._replies.close()

    def _put(self, blob: bytes) -> None:
        while True:
            if self._send_error is not None or not self.alive():
                raise self._died()
            try:
                self._out.put(blob, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _reply(self) -> dict[str, Any] | None:
        """One reply: progress (None) or the report; raises what the draft process hit."""
        try:
            msg: tuple[Any, ...] = self._replies.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if msg[0] == "done":
            self.done = int(msg[1])
            return None
        if msg[0] == "result":
            report: dict[str, Any] = msg[1]
            return report
        name, trace = msg[1], msg[2]
        log.error("simulation: the draft side's process failed:\n%s", trace)
        raise SimulationFailedError(f"simulation failed in the draft side's process ({name})")

    def _died(self) -> SimulationFailedError:
        try:
            code: int | None = self.proc.wait(1)
        except subprocess.TimeoutExpired:
            code = None
        how = (
            "is still running but stopped reading"
            if code is None
            else f"was killed by signal {-code}"
            if code < 0
            else f"exited with code {code}"
        )
        return SimulationFailedError(
            f"simulation failed: the draft side's process {how} before it reported"
        )

    # -- the sender thread -------------------------------------------------------------------

    def _write(self) -> None:
        while not self._stop.is_set():
            try:
                blob = self._out.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            try:
                self._chunks.send_bytes(blob)
            except (OSError, ValueError) as exc:  # the draft process died or was stopped
                self._send_error = exc
                return
            if not blob:
                return


_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from capstream.simulation.parallel import serve; serve(int(sys.argv[2]), int(sys.argv[3]))"
)
"""The draft process's program: the caller's import path, then ``serve`` on the pipes."""


def serve(chunks_fd: int, replies_fd: int) -> None:
    """The draft process: its spec, then chunks in; progress and then the side's report out."""
    chunks = Connection(chunks_fd, writable=False)
    replies = Connection(replies_fd, readable=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches both; the caller decides
    try:
        spec: DraftSpec = pickle.loads(chunks.recv_bytes())
        side = Side(
            "draft", spec.account_id, config_of(*spec.records),
            [Chart(*c) for c in spec.charts], drop=spec.drop,
        )  # fmt: skip
        sides = [side]
        next_sample = spec.from_ms
        done = 0
        while True:
            blob = chunks.recv_bytes()
            if not blob:
                break
            columns = unpack(blob)
            chunk = ColumnChunk(columns, spec.account_id)
            next_sample = replay(sides, chunk, next_sample, spec.every)
            done += len(columns[0])
            replies.send(("done", done))
        replies.send(("result", side.report(spec.to_ms)))
    except (EOFError, BrokenPipeError):
        return  # the caller stopped: nobody to report to
    except BaseException as exc:
        import traceback

        with contextlib.suppress(OSError):
            replies.send(("error", type(exc).__name__, traceback.format_exc()))
