"""A partition's state without Kafka: events, the event clock, flush + reload, catalog, feed."""

from __future__ import annotations

import pytest

from capstream.core import CapHit, Effects, UsageEvent
from capstream.errors import DecodeError
from capstream.processors.catalog import Catalog
from capstream.processors.feedrows import decode_row, encode_row
from capstream.processors.partition import CLOCK_KEY, PartitionState, bot_key
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.usage_results import Decoded

T0 = 1_795_000_000_000
MIN = 60_000


def catalog_with_block(account: str = "acme", threshold: int = 1_000) -> Catalog:
    c = Catalog()
    c.apply_policy(None, PolicyRecord(
        account_id=account, policy_id="p", metric="tokens", threshold=threshold,
        window_seconds=3600, scope="bot", bot_id="bot-1", block={"duration_seconds": 60},
    ).to_bytes())  # fmt: skip
    return c


def ev(i: int, t: int, tokens: int = 600, account: str = "acme") -> UsageEvent:
    return UsageEvent(f"e{i}", account, "bot-1", "c", "text", "m", tokens, 0, 1, False, 10, t)


def one(*events: UsageEvent) -> Decoded:
    return Decoded(list(events), None, [])


class Sink:
    def __init__(self) -> None:
        self.effects: list[Effects] = []

    def __call__(self, effects: Effects, origin: int | None) -> None:
        self.effects.append(effects)

    def blocked(self) -> list[int | None]:
        return [s.blocked_until_ms for e in self.effects for s in e.enforcement
                if s.bot_id == "bot-1"]  # fmt: skip


def refuse(*args: object) -> None:
    raise AssertionError(f"refused {args}")


def test_event_time_moves_with_the_newest_event_and_expires_other_accounts() -> None:
    sink = Sink()
    catalog = catalog_with_block()
    part = PartitionState(0, catalog, sink, event_time=True)
    part.apply(0, one(ev(1, T0), ev(2, T0 + MIN)), 0, refuse)  # the wall clock is ignored
    assert sink.blocked()[-1] == T0 + MIN + 60_000
    assert part.next_deadline == T0 + MIN + 60_000
    # An older event does not move the clock back; another account's later event ends the
    # block of acme's bot (the timer fires on the clock step, before that event applies).
    part.apply(1, one(ev(3, T0 + 30_000, tokens=1, account="zeta")), 0, refuse)
    assert part.clock_ms == T0 + MIN
    part.apply(2, one(ev(4, T0 + 3 * MIN, tokens=1, account="zeta")), 0, refuse)
    ended = [s for e in sink.effects for s in e.enforcement if s.account_id == "acme"][-1]
    assert (ended.blocked_until_ms, ended.updated_at_ms) == (None, T0 + 3 * MIN)


def test_a_flushed_and_reloaded_partition_drops_replays_and_republishes_its_states() -> None:
    catalog = catalog_with_block(threshold=10_000)
    first = PartitionState(3, catalog, Sink(), event_time=True)
    first.apply(7, one(ev(1, T0), ev(2, T0 + 1)), 0, refuse)
    values: dict[bytes, bytes] = {CLOCK_KEY: str(first.clock_ms).encode()}
    bots: list[bytes] = []
    for account in first.take_dirty():
        acct, bot_values = first.serialize(account)
        assert acct is not None
        values[account.encode()] = acct
        bots += [v for k, v in bot_values if k == bot_key("acme", "bot-1")]
    sink = Sink()
    again = PartitionState(3, catalog, sink, event_time=True)
    current = again.load(values.items(), bots, wall_ms=0)
    assert {s.bot_id for s in current} == {"*", "bot-1"}
    assert again.clock_ms == T0 + 1
    again.apply(7, one(ev(1, T0), ev(2, T0 + 1)), 0, refuse)  # the same record again
    assert again.duplicates == 2
    state = again.accounts["acme"]
    assert state.bots["bot-1"].day[0] == 1_200  # counted once


def test_a_policy_change_re_decides_the_account_where_it_is_held() -> None:
    sink = Sink()
    catalog = catalog_with_block(threshold=10_000)
    part = PartitionState(0, catalog, sink)
    part.apply(0, one(ev(1, T0)), T0, refuse)
    assert sink.blocked() == [None]
    catalog.apply_policy(None, PolicyRecord(
        account_id="acme", policy_id="p", metric="tokens", threshold=500, window_seconds=3600,
        scope="bot", bot_id="bot-1", block={"duration_seconds": 60},
    ).to_bytes())  # fmt: skip
    assert part.reevaluate("acme", T0 + 5)
    assert sink.blocked()[-1] == T0 + 5 + 60_000
    assert not part.reevaluate("nobody", T0 + 5)


def test_the_catalog_keeps_objects_until_a_record_changes_them() -> None:
    c = Catalog()
    ps, ts = c.policies("acme"), c.settings("acme")
    assert c.policies("acme") is ps and c.settings("acme") is ts  # identity: no re-decision
    c.apply_settings(b"acme", TenantSettingsRecord(account_id="acme", plan="pro").to_bytes())
    assert c.settings("acme").plan == "pro"
    c.apply_settings(b"acme", None)  # tombstone: back to the defaults
    assert c.settings("acme").plan == "free"
    with pytest.raises(DecodeError) as exc:  # valid Avro, refused by the core
        c.apply_settings(b"acme", TenantSettingsRecord(
            account_id="acme", plan="free", auto_downgrade=True).to_bytes())  # fmt: skip
    assert exc.value.reason == "invalid"
    catalog = catalog_with_block()
    assert [p.policy_id for p in catalog.policies("acme").policies] == ["p"]
    catalog.apply_policy(b"acme/p", None)
    assert len(catalog.policies("acme")) == 0
    with pytest.raises(DecodeError):
        catalog.apply_policy(b"no-slash", None)


def test_cap_hits_roll_up_and_survive_the_feed_table() -> None:
    part = PartitionState(0, Catalog(), Sink())
    store: dict[bytes, bytes] = {}
    hit = CapHit("acme", "bot-1", "conv", "text", "daily", "2026-11-18", T0, "h1")
    assert part.apply_cap_hit(hit, store.get).attempts == 1
    for key, value, row in part.take_feed():
        store[key] = value
        assert decode_row(encode_row(row)) == row
    assert part.feed_dirty == {}
    assert part.apply_cap_hit(hit, store.get).attempts == 1  # a retried hit counts once
    second = CapHit("acme", "bot-1", "conv", "text", "daily", "2026-11-18", T0 + 1, "h2")
    row = part.apply_cap_hit(second, store.get)
    assert (row.attempts, row.cta) == (2, "Upgrade to Starter →")


def test_a_new_owner_never_publishes_a_version_an_earlier_owner_reached() -> None:
    """A decision goes out before the state holding its version is flushed: the next owner
    restores an older state, and republished its decisions under lower versions (a gateway
    keeping the newest ignored them). Each load raises the partition's version floor."""
    from capstream.processors.partition import EPOCH_KEY

    sink = Sink()
    catalog = catalog_with_block(threshold=10_000)
    first = PartitionState(0, catalog, sink)
    first.load([], [], T0)  # the first ownership: epoch 1, versions as the core counts them
    assert first.epoch_dirty and first.version_floor == 0
    first.apply(0, one(ev(1, T0, tokens=600)), T0, refuse)
    state = first.accounts["acme"]  # what the last flush wrote
    account, bots = state.account.to_bytes(), [state.bots["bot-1"].to_bytes()]
    for i in range(2, 6):  # published, never flushed: the owner dies here
        first.apply(i, one(ev(i, T0 + i * MIN, tokens=6_000 * i)), T0 + i * MIN, refuse)
    published = max(s.version for e in sink.effects for s in e.enforcement)
    assert published >= 2
    second = PartitionState(0, catalog, Sink())
    current = second.load([(EPOCH_KEY, b"1"), (b"acme", account)], bots, T0)
    assert second.epoch == 2
    assert current and min(s.version for s in current) > published
    assert second.accounts["acme"].account.version_floor == 1 << 32


def _acme_blocks(sink: Sink) -> list[int | None]:
    return [s.blocked_until_ms for e in sink.effects for s in e.enforcement
            if (s.account_id, s.bot_id) == ("acme", "bot-1")]  # fmt: skip


def _flushed(part: PartitionState, clock_ms: int) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """What a flush leaves in the tables: every account's and bot's value, and the clock."""
    values: list[tuple[bytes, bytes]] = [(CLOCK_KEY, str(clock_ms).encode())]
    bots: list[bytes] = []
    for account in part.take_dirty():
        acct, bot_values = part.serialize(account)
        if acct is not None:
            values.append((account.encode(), acct))
        bots += [v for _, v in bot_values]
    return values, bots


@pytest.mark.parametrize("lag", [0, MIN + 1], ids=["clock-of-the-state", "clock-behind"])
def test_a_reload_decides_nothing_the_core_would_not(lag: int) -> None:
    """A bot's block ends while its window is still over the threshold: the core blocks it
    again at its next event. A reload in between used to start that block at once, at the
    restored clock: earlier than the core, and every later block of the bot with it (the
    full chaos run's one wrong state). A paced flush persists the clock of the records it
    acks, which can be behind the instant the states it writes were last decided at
    (``lag``): the early block then even started inside the one that had ended."""
    catalog = catalog_with_block()
    events = [ev(1, T0), ev(2, T0 + MIN)]  # 1,200 tokens: blocked until T0 + 2 min
    other = ev(3, T0 + 2 * MIN + 1, tokens=1, account="zeta")  # the clock ends the block
    nxt = ev(4, T0 + 2 * MIN + 30_000, tokens=1)  # the bot's next event: blocked again

    straight = Sink()
    part = PartitionState(0, catalog, straight, event_time=True)
    part.apply(0, one(*events), 0, refuse)
    part.apply(1, one(other), 0, refuse)
    part.apply(2, one(nxt), 0, refuse)
    assert _acme_blocks(straight) == [None, T0 + 2 * MIN, None, nxt.occurred_at_ms + 60_000]

    first = PartitionState(0, catalog, Sink(), event_time=True)
    first.apply(0, one(*events), 0, refuse)
    first.apply(1, one(other), 0, refuse)
    values, bots = _flushed(first, first.clock_ms - lag)
    sink = Sink()
    again = PartitionState(0, catalog, sink, event_time=True)
    current = again.load(values, bots, wall_ms=0)
    assert [
        s.blocked_until_ms for s in current if s.account_id == "acme" and s.bot_id == "bot-1"
    ] == [None]
    assert _acme_blocks(sink) == []  # nothing decided at load
    again.apply(1, one(other), 0, refuse)  # the replay from the last commit
    again.apply(2, one(nxt), 0, refuse)
    assert _acme_blocks(sink) == [nxt.occurred_at_ms + 60_000]  # as the core, at the event
    assert again.accounts["acme"].bots["bot-1"].day[0] == 1_201
