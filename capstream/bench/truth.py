"""Ground truth: the peers' window crossings and capstream's decisions, for a stream prefix.

Both are computed from the generated events in each partition's order (the order Kafka keeps),
over a prefix: the first ``cut[p]`` events of partition ``p`` — what a system processed.

- Peers (the simplified job): the tokens of each bot summed in hopping windows aligned to the
  epoch; a *crossing* is the event at which a (bot, window) sum first reaches the threshold.
- capstream: the last enforcement state of every bot, as the decision core computes it
  walking each partition with the worker's event-time clock rule (the clock is the newest
  ``occurred_at`` of the partition; states whose deadline has come are expired first).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from capstream.core import (
    AccountState,
    Effects,
    EnforcementState,
    Notification,
    Policy,
    PolicySet,
    TenantSettings,
    UsageEvent,
    evaluate,
    expire,
)
from capstream.processors.catalog import core_policy
from capstream.streams.records import PolicyRecord

Crossing = tuple[str, int, str]
"""(bot key ``account/bot``, window start in epoch ms, event_id of the crossing event)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a system's decisions compare with the ground truth."""

    expected: int
    got: int
    missing: int
    extra: int

    @property
    def correct(self) -> bool:
        return self.missing == 0 and self.extra == 0

    def as_dict(self) -> dict[str, int | bool]:
        return {"expected": self.expected, "got": self.got, "missing": self.missing,
                "extra": self.extra, "correct": self.correct}  # fmt: skip


def split_by_partition(
    events: Iterable[UsageEvent], partition_of: Mapping[str, int], partitions: int
) -> list[list[UsageEvent]]:
    """The events of each partition, in order."""
    out: list[list[UsageEvent]] = [[] for _ in range(partitions)]
    for e in events:
        out[partition_of[e.account_id]].append(e)
    return out


def crossings(
    events: Iterable[UsageEvent], threshold: int, window_ms: int, step_ms: int
) -> list[Crossing]:
    """Every (bot, hopping window) whose token sum reaches ``threshold``, at which event.

    Windows are ``[k * step, k * step + window)``; events of one bot must come in time
    order (they do: a bot's events share a partition and the generator's clock is monotonic).
    """
    sums: dict[str, dict[int, int]] = {}
    out: list[Crossing] = []
    for e in events:
        key = f"{e.account_id}/{e.bot_id}"
        t = e.occurred_at_ms
        tokens = e.tokens_in + e.tokens_out
        windows = sums.get(key)
        if windows is None:
            windows = sums[key] = {}
        first = ((t - window_ms) // step_ms + 1) * step_ms
        for start in [s for s in windows if s < first]:
            del windows[start]
        for start in range(first, t - t % step_ms + 1, step_ms):
            before = windows.get(start, 0)
            after = windows[start] = before + tokens
            if before < threshold <= after:
                out.append((key, start, e.event_id))
    return out


def peer_truth(
    by_partition: Sequence[Sequence[UsageEvent]],
    cut: Sequence[int],
    threshold: int,
    window_ms: int,
    step_ms: int,
) -> set[Crossing]:
    """The crossings of the prefix ``cut`` (events per partition)."""
    out: set[Crossing] = set()
    for events, n in zip(by_partition, cut, strict=True):
        out.update(crossings(events[:n], threshold, window_ms, step_ms))
    return out


def policy_sets(policies: Iterable[PolicyRecord]) -> dict[str, PolicySet]:
    """The core's policies per account, ordered as the worker's catalog orders them."""
    by_account: dict[str, list[Policy]] = {}
    for p in policies:
        by_account.setdefault(p.account_id, []).append(core_policy(p))
    return {a: PolicySet(sorted(ps, key=lambda p: p.policy_id)) for a, ps in by_account.items()}


def compare(expected: set[Crossing], got: Iterable[Crossing]) -> Verdict:
    """Missing and extra crossings (a crossing reported twice counts once)."""
    seen = set(got)
    return Verdict(len(expected), len(seen), len(expected - seen), len(seen - expected))


def capstream_truth(
    by_partition: Sequence[Sequence[UsageEvent]],
    cut: Sequence[int],
    policies: Mapping[str, PolicySet],
    settings: Mapping[str, TenantSettings],
    notifications: list[Notification] | None = None,
) -> dict[tuple[str, str], EnforcementState]:
    """The last enforcement state of every (account, bot) that has one of its own after the
    prefix ``cut`` (a bot following its account's ``*`` state has none); every
    notification the core emits on the way is appended to ``notifications`` if given."""
    last: dict[tuple[str, str], EnforcementState] = {}
    for events, n in zip(by_partition, cut, strict=True):
        states: dict[str, AccountState] = {}
        # Deadlines in a heap (each account's current one), rather than a scan of every
        # account whenever the clock moves: the same expirations, in far less time.
        heap: list[tuple[int, str]] = []
        queued: dict[str, int] = {}
        now = 0
        for e in events[:n]:
            if e.occurred_at_ms > now:
                now = e.occurred_at_ms
                while heap and heap[0][0] <= now:
                    deadline, account = heapq.heappop(heap)
                    if queued.get(account) != deadline:
                        continue  # superseded by a later deadline
                    del queued[account]
                    st = states[account]
                    if st.view is not None and st.deadline_ms <= now:
                        effects = expire(st, now)[1]
                        keep_last(last, effects.enforcement)
                        if notifications is not None:
                            notifications.extend(effects.notifications)
                    _queue(heap, queued, account, st, now)
            st = states.get(e.account_id) or states.setdefault(
                e.account_id, AccountState(e.account_id)
            )
            _, effects = evaluate(st, e, policies[e.account_id], settings[e.account_id], now)
            keep_last(last, effects.enforcement)
            if notifications is not None:
                notifications.extend(effects.notifications)
            _queue(heap, queued, e.account_id, st, now)
    return last


def scan_effects(
    events: Iterable[UsageEvent],
    policies: Mapping[str, PolicySet],
    settings: Mapping[str, TenantSettings],
) -> Iterator[Effects]:
    """Every ``Effects`` the core returns walking one partition's ``events`` with the worker's
    clock rule written plainly: ``now`` is the newest ``occurred_at_ms``, and each clock move
    first expires every account whose deadline it reached (:func:`capstream_truth` does the
    same with a heap; tests compare the two)."""
    states: dict[str, AccountState] = {}
    now = 0
    for e in events:
        if e.occurred_at_ms > now:
            now = e.occurred_at_ms
            for st in states.values():
                if st.view is not None and st.deadline_ms <= now:
                    yield expire(st, now)[1]
        st = states.setdefault(e.account_id, AccountState(e.account_id))
        yield evaluate(st, e, policies[e.account_id], settings[e.account_id], now)[1]


def keep_last(
    last: dict[tuple[str, str], EnforcementState], states: Iterable[EnforcementState]
) -> None:
    """Keep each key's last control record: a state, or (``follows_account``: the state is
    followed by a tombstone) none."""
    for s in states:
        if s.follows_account:  # then a tombstone: the bot follows its account's "*"
            last.pop((s.account_id, s.bot_id), None)
        else:
            last[(s.account_id, s.bot_id)] = s


def _queue(
    heap: list[tuple[int, str]], queued: dict[str, int], account: str, st: AccountState, now: int
) -> None:
    # A deadline already reached is looked at again at the next clock move, as a scan would.
    deadline = max(st.deadline_ms, now + 1)
    if queued.get(account) != deadline:
        queued[account] = deadline
        heapq.heappush(heap, (deadline, account))
