"""Driving the core with event time (backtests, simulations): the clock of the worker's
event-time mode, without Kafka.

``now`` is the newest ``occurred_at_ms`` seen. Each time an event moves it forward, every
state whose deadline the new time reached is expired at that time before the event is applied
(blocks end, local midnight, throttles): the decisions are those of a worker in event-time
mode reading the same events in the same order (``processors.partition.PartitionState``).
"""

from __future__ import annotations

import heapq

from capstream.core.evaluate import evaluate, expire
from capstream.core.models import NEVER, TenantSettings, UsageEvent
from capstream.core.state import AccountState, Effects, Policies


class EventClock:
    """An event-time clock over the account states it has evaluated.

    ``clock.evaluate(state, event, policies, settings)`` returns the effects in order: the
    expiries the event's time brought (of any account seen so far), then the event's own.
    """

    __slots__ = ("_deadlines", "_heap", "now_ms", "states")

    def __init__(self, now_ms: int = 0) -> None:
        self.now_ms = now_ms
        """The newest event time seen (0: none yet)."""
        self.states: dict[str, AccountState] = {}
        self._heap: list[tuple[int, str]] = []
        self._deadlines: dict[str, int] = {}

    def advance(self, at_ms: int) -> list[Effects]:
        """Move the clock to ``at_ms`` if it is newer; expire every state whose deadline it
        reached. Returns the non-empty effects of those expiries."""
        out: list[Effects] = []
        if at_ms <= self.now_ms:
            return out
        self.now_ms = at_ms
        heap, deadlines = self._heap, self._deadlines
        while heap and heap[0][0] <= at_ms:
            d, account_id = heapq.heappop(heap)
            if deadlines.get(account_id) != d:
                continue  # superseded by an earlier entry
            del deadlines[account_id]
            state = self.states[account_id]
            if state.view is not None and state.deadline_ms <= at_ms:
                _, effects = expire(state, at_ms)
                if effects:
                    out.append(effects)
            self._schedule(state)
        return out

    def evaluate(
        self,
        state: AccountState,
        event: UsageEvent,
        policies: Policies,
        settings: TenantSettings,
        *,
        partition: int = -1,
        offset: int = -1,
        index: int = 0,
    ) -> list[Effects]:
        """Advance to the event's time, then apply it at the clock's ``now``; the non-empty
        effects in order (a late event is applied at the newer ``now``, decided at its own
        time: see :func:`~capstream.core.evaluate.evaluate`)."""
        out = self.advance(event.occurred_at_ms)
        self.states[state.account_id] = state
        _, effects = evaluate(
            state, event, policies, settings, self.now_ms,
            partition=partition, offset=offset, index=index,
        )  # fmt: skip
        if effects:
            out.append(effects)
        self._schedule(state)
        return out

    def _schedule(self, state: AccountState) -> None:
        d = state.deadline_ms
        if d < NEVER:
            held = self._deadlines.get(state.account_id)
            if held is None or d < held:
                self._deadlines[state.account_id] = d
                heapq.heappush(self._heap, (d, state.account_id))
