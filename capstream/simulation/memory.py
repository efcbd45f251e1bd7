"""An in-memory stand-in for ``usage_events`` that answers the simulation's three statements
(``source.COUNT_SQL``, ``FIRST_SQL``, ``NEXT_SQL``) with their semantics, as rows or (with
:meth:`MemoryEvents.columns`) as columns: for tests and for trying the engine without a
store. Anything else raises ``ValueError``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from capstream.core import UsageEvent
from capstream.simulation.source import (
    COLUMNS,
    COUNT_SQL,
    FIRST_SQL,
    HOUR_MS,
    NEXT_SQL,
    WITH_ATTRIBUTES,
    Row,
)


class MemoryEvents:
    """``query(sql, params) -> rows`` over a list of ``UsageEvent`` (any order)."""

    def __init__(self, events: Sequence[UsageEvent] = ()) -> None:
        self.events = sorted(events, key=lambda e: (e.occurred_at_ms, e.event_id))
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, sql: str, params: dict[str, Any]) -> list[Row]:
        self.calls.append((sql, params))
        with_attributes = WITH_ATTRIBUTES in sql
        sql = sql.replace(WITH_ATTRIBUTES, COLUMNS, 1)
        account, lo, hi = params["account"], int(params["lo"]), int(params["hi"])
        rows = [e for e in self.events if e.account_id == account and lo <= e.occurred_at_ms < hi]
        if sql == COUNT_SQL:
            hours: dict[int, int] = {}
            for e in rows:
                hours[e.occurred_at_ms // HOUR_MS] = hours.get(e.occurred_at_ms // HOUR_MS, 0) + 1
            return [{"hour": h, "n": n} for h, n in sorted(hours.items())]
        if sql == NEXT_SQL:
            after = (int(params["after_t"]), str(params["after_e"]))
            rows = [e for e in rows if (e.occurred_at_ms, e.event_id) > after]
        elif sql != FIRST_SQL:
            raise ValueError("MemoryEvents answers only the simulation's statements")
        out: list[Row] = [
            {"event_id": e.event_id, "bot": e.bot_id,
             "conversation_id": e.conversation_id, "category": e.category, "model": e.model,
             "tokens_in": e.tokens_in, "tokens_out": e.tokens_out, "messages": e.messages,
             "conversation_started": e.conversation_started,
             "credits_micro": e.credits_micro, "t": e.occurred_at_ms}
            for e in rows[: int(params["limit"])]
        ]  # fmt: skip
        if with_attributes:
            for row, e in zip(out, rows, strict=False):
                row["attributes"] = dict(e.attributes)
        return out

    def columns(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        """The same answer as column names and one list per column (the column port)."""
        rows = self(sql, params)
        names = list(rows[0]) if rows else []
        return names, [[r[k] for r in rows] for k in names]
