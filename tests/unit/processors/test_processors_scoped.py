"""A partition's per-attribute windows (issue 24.3): the scoped_values bound and its count."""

from __future__ import annotations

from capstream.core import UsageEvent
from capstream.processors.catalog import Catalog
from capstream.processors.partition import CLOCK_KEY, PartitionState
from capstream.streams.records import PolicyRecord
from capstream.streams.usage_results import Decoded

T0 = 1_795_000_000_000
MIN = 60_000


def catalog() -> Catalog:
    c = Catalog()
    c.apply_policy(None, PolicyRecord(
        account_id="acme", policy_id="pu", metric="tokens", threshold=10**9,
        window_seconds=3600, scope="account_each_bot", alert={"recipients": []},
        per="end_user",
    ).to_bytes())  # fmt: skip
    return c


def ev(i: int, t: int, user: str) -> UsageEvent:
    return UsageEvent(
        f"e{i}", "acme", "bot-1", "c", "text", "m", 10, 0, 1, False, 0, t, {"end_user": user}
    )


def refuse(*args: object) -> None:
    raise AssertionError(f"refused {args}")


def test_the_bound_is_the_option_and_windows_dropped_in_use_are_counted() -> None:
    part = PartitionState(0, catalog(), lambda e, o: None, event_time=True, scoped_values=2)
    events = [ev(i, T0 + i * MIN, user) for i, user in enumerate(["a", "b", "c", "c", "d"])]
    part.apply(0, Decoded(events, None, []), 0, refuse)
    acct = part.accounts["acme"].account
    assert acct.scoped_capacity == 2 and len(acct.scoped) == 2
    assert part.scoped_evicted == 2  # a for c, then b for d: both still in their hour
    assert acct.scoped_evicted == 0  # handed to the partition's count

    # Reloaded by a worker with another bound: the option applies, the windows come back.
    values = {CLOCK_KEY: str(part.clock_ms).encode()}
    for account in part.take_dirty():
        raw, _ = part.serialize(account)
        assert raw is not None
        values[account.encode()] = raw
    again = PartitionState(0, catalog(), lambda e, o: None, event_time=True, scoped_values=5)
    again.load(values.items(), [], wall_ms=0)
    back = again.accounts["acme"].account
    assert back.scoped_capacity == 5
    assert [k.rsplit("\x1f", 1)[1] for k in back.scoped] == ["c", "d"]
