"""An account's raw events from ClickHouse, in time order, in bounded chunks.

Reads ``usage_events`` through a read-only ``Query`` port (``(sql, params) -> rows``, see
``capstream.api.clickhouse``: the embedded chDB store through the sink that owns it, or a
ClickHouse server URL). Every statement is parameterised and filtered by the account.

First one query counts the account's events per hour of the range (at most 93 × 24 rows):
that gives the total for progress and lets consecutive hours be read together, about
``chunk_rows`` events at a time. A slice is read with keyset pagination on
``(occurred_at, event_id)`` and ``LIMIT chunk_rows``, so an hour holding more events than a
chunk is read in several pieces.

Two ports read the chunks: the row port (a dict per row, every store) or, when the store
offers it, the column port (``Columns``: ``(sql, params) -> (names, columns)``, one list per
column as clickhouse-connect decodes the Native format), which skips the per-row dicts: the
events are built from the columns in one ``map``. With ``prefetch`` (the default) a thread
reads the next chunk while the caller works on the current one (ClickHouse runs the query
outside the GIL): at most three chunks are in memory (the caller's, one queued, one
being read), whatever the range.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Protocol

from capstream.core import PolicySet, UsageEvent

Row = dict[str, Any]
Query = Callable[[str, dict[str, Any]], list[Row]]
Columns = Callable[[str, dict[str, Any]], tuple[list[str], list[Sequence[Any]]]]
"""The column port: column names and one sequence per column (``StoreQuery.columns``)."""
HOUR_MS = 3_600_000
DEFAULT_CHUNK_ROWS = 40_000
"""Rows a statement reads at most. The table is ordered by (account, bot, time), so a time
slice is read as one range per bot, each in whole granules of 8,192 rows: the larger the
chunk, the less of each granule is read for nothing (and the fewer statements, ~4 ms each
before the first row). 10M events with two processes: 300,444 events/s with 20,000 rows,
358,974 with 40,000 (+30 MB peak RSS); see the README."""

_WHERE = (
    "account_id = {account:String} "
    "AND occurred_at >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
    "AND occurred_at < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"
)
COUNT_SQL = (
    "SELECT intDiv(toUnixTimestamp64Milli(occurred_at), 3600000) AS hour, count() AS n "
    f"FROM usage_events WHERE {_WHERE} GROUP BY hour ORDER BY hour"
)
COLUMNS = (
    "event_id, toLowCardinality(bot_id) AS bot, conversation_id, category, model, tokens_in, "
    "tokens_out, messages, conversation_started, credits_micro, "
    "toUnixTimestamp64Milli(occurred_at) AS t"
)
"""In the order of ``UsageEvent``'s arguments after the account (the one every row of a
statement has: not read, nor shipped to the draft process). The bot, like the category and
the model (``LowCardinality`` in the table), comes as a dictionary: one ``str`` per bot,
shared by its events, so the core's lookups by it hash it once and compare by identity."""
WITH_ATTRIBUTES = COLUMNS + ", attributes"
"""The same with the events' attributes (only when a per-attribute policy reads them: the
map costs to read)."""
FIRST_SQL = (
    f"SELECT {COLUMNS} FROM usage_events WHERE {_WHERE} "
    "ORDER BY occurred_at, event_id LIMIT {limit:UInt32}"
)
NEXT_SQL = (
    f"SELECT {COLUMNS} FROM usage_events WHERE {_WHERE} "
    "AND (occurred_at, event_id) > (fromUnixTimestamp64Milli({after_t:Int64}, 'UTC'), "
    "{after_e:String}) ORDER BY occurred_at, event_id LIMIT {limit:UInt32}"
)


_T = 10
"""The column of the event time (``t``) in ``COLUMNS``."""


def reads_attributes(*policy_sets: PolicySet) -> bool:
    """Does a per-attribute policy of these sets count by the events' attributes (end user,
    API key, team; a per-model one reads the model, always read)?"""
    return any(not sp.model for ps in policy_sets for sp in ps.scoped)


class Events(Protocol):
    """A chunk's events in time order: iterable (once or more) and sized."""

    def __iter__(self) -> Iterator[UsageEvent]: ...
    def __len__(self) -> int: ...


class ColumnChunk:
    """A chunk read through the column port: the events are built one at a time as the
    chunk is iterated, each gone once the caller moves on. (A list of 20,000 events kept
    them alive together: the garbage collector then scanned them again and again, which
    cost more than reading them.)"""

    __slots__ = ("account_id", "columns", "size")

    def __init__(self, columns: list[Sequence[Any]], account_id: str) -> None:
        self.columns = columns
        self.account_id = account_id
        self.size = len(columns[0])

    def __iter__(self) -> Iterator[UsageEvent]:
        cols = self.columns
        return map(UsageEvent, cols[0], repeat(self.account_id), *cols[1:])

    def __len__(self) -> int:
        return self.size


@dataclass(frozen=True, slots=True)
class Plan:
    """Time slices ``[lo, hi)`` to read in order, and how many events the range holds."""

    slices: tuple[tuple[int, int], ...]
    total: int


class EventSource:
    """One account's events of ``[from_ms, to_ms)`` in time order (ties by event id)."""

    def __init__(
        self,
        query: Query,
        account_id: str,
        from_ms: int,
        to_ms: int,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        columns: Columns | None = None,
        prefetch: bool = True,
        attributes: bool = False,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        self.query = query
        self.account_id = account_id
        self.from_ms = from_ms
        self.to_ms = to_ms
        self.chunk_rows = chunk_rows
        self.columns = columns
        self.prefetch = prefetch
        self.attributes = attributes
        """Read the events' attributes too (a per-end-user, API-key or team policy counts
        by them); without, events carry none."""
        self.queries = 0
        """Statements run so far (the count, then one per chunk)."""

    def plan(self) -> Plan:
        """Count the events per hour; group consecutive hours into slices of about a chunk."""
        rows = self._run(COUNT_SQL, {"lo": self.from_ms, "hi": self.to_ms})
        slices: list[tuple[int, int]] = []
        total = 0
        lo = hi = -1
        held = 0
        for row in rows:
            hour, n = int(row["hour"]), int(row["n"])
            start = max(hour * HOUR_MS, self.from_ms)
            end = min((hour + 1) * HOUR_MS, self.to_ms)
            total += n
            if lo >= 0 and held + n > self.chunk_rows:
                slices.append((lo, hi))
                lo, held = -1, 0
            if lo < 0:
                lo = start
            hi, held = end, held + n
        if lo >= 0:
            slices.append((lo, hi))
        return Plan(tuple(slices), total)

    def chunks(self, plan: Plan | None = None) -> Generator[Events, None, None]:
        """The events, a chunk (at most ``chunk_rows``) at a time, in time order."""
        plan = plan or self.plan()
        if not self.prefetch:
            yield from self._read(plan)
            return
        # One chunk ahead in a thread: ``slots`` holds at most one chunk besides the one the
        # caller works on; ``stop`` ends the thread when the caller stops early.
        slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> bool:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def ahead() -> None:
            try:
                for chunk in self._read(plan):
                    if not put(("chunk", chunk)):
                        return
            except BaseException as exc:  # handed to the caller's thread, raised there
                put(("error", exc))
                return
            put(("end", None))

        reader = threading.Thread(target=ahead, name="simulation-read", daemon=True)
        reader.start()
        try:
            while True:
                kind, item = slots.get()
                if kind == "chunk":
                    yield item
                elif kind == "error":
                    raise item
                else:
                    return
        finally:
            stop.set()
            reader.join()

    def _read(self, plan: Plan) -> Iterator[Events]:
        limit = self.chunk_rows
        for lo, hi in plan.slices:
            params: dict[str, Any] = {"lo": lo, "hi": hi, "limit": limit}
            sql = FIRST_SQL
            while True:
                events, last = self._events(sql, params)
                if events:
                    yield events
                if len(events) < limit:
                    break
                sql = NEXT_SQL
                params = {**params, "after_t": last[0], "after_e": last[1]}

    def _events(self, sql: str, params: dict[str, Any]) -> tuple[Events, tuple[int, str]]:
        """One statement's rows as events (the columns are ``UsageEvent``'s arguments), and
        the last one's (time, event id) for the next page."""
        if self.attributes:
            sql = sql.replace(COLUMNS, WITH_ATTRIBUTES, 1)
        if self.columns is None:
            account = self.account_id
            rows = (tuple(r.values()) for r in self._run(sql, params))
            events = [UsageEvent(v[0], account, *v[1:]) for v in rows]
            last = events[-1] if events else None
            return events, (last.occurred_at_ms, last.event_id) if last else (0, "")
        self.queries += 1
        _, cols = self.columns(sql, {"account": self.account_id, **params})
        if not cols or not len(cols[0]):
            return [], (0, "")
        return ColumnChunk(cols, self.account_id), (int(cols[_T][-1]), str(cols[0][-1]))

    def _run(self, sql: str, params: dict[str, Any]) -> list[Row]:
        self.queries += 1
        return self.query(sql, {"account": self.account_id, **params})
