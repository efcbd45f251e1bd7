"""A resume record in the catalog lifts the bot's running block at the worker (issue 18
item 5): at once, once (replays and older resumes change nothing), and again after a reload."""

from __future__ import annotations

from test_processors_partition import MIN, T0, Sink, catalog_with_block, ev, one, refuse

from capstream.processors.partition import CLOCK_KEY, PartitionState
from capstream.streams.records import BotResumeRecord


def resume(at: int, bot: str = "bot-1") -> bytes:
    return BotResumeRecord(
        account_id="acme", bot_id=bot, resumed_at_ms=at, resumed_by="key:abc"
    ).to_bytes()


def test_a_resume_record_lifts_the_block_where_the_account_is_held() -> None:
    sink = Sink()
    catalog = catalog_with_block()
    part = PartitionState(0, catalog, sink, event_time=True)
    part.apply(0, one(ev(1, T0), ev(2, T0 + MIN)), 0, refuse)
    assert sink.blocked()[-1] == T0 + MIN + 60_000
    before = catalog.policies("acme")
    assert catalog.apply_resume(b"acme/bot-1", resume(T0 + MIN + 1_000)) == "acme"
    assert catalog.policies("acme") is not before  # a new set: the account is re-decided
    assert part.reevaluate("acme", T0 + MIN + 1_000)
    assert sink.blocked()[-1] is None
    # the same resume again, or an older one: nothing to re-decide
    assert catalog.apply_resume(b"acme/bot-1", resume(T0 + MIN + 1_000)) is None
    assert catalog.apply_resume(b"acme/bot-1", resume(T0)) is None
    assert catalog.apply_resume(b"acme/bot-1", None) is None  # a tombstone forgets nothing
    # flushed, reloaded (a restart): still lifted
    values: dict[bytes, bytes] = {CLOCK_KEY: str(part.clock_ms).encode()}
    bots: list[bytes] = []
    for account in part.take_dirty():
        acct, bot_values = part.serialize(account)
        assert acct is not None
        values[account.encode()] = acct
        bots += [v for _, v in bot_values]
    again = PartitionState(0, catalog, Sink(), event_time=True)
    current = again.load(values.items(), bots, wall_ms=0)
    assert {s.bot_id: s.blocked_until_ms for s in current}["bot-1"] is None
