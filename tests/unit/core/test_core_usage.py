"""Usage state: tenant-calendar totals, idempotent replays, and the versioned byte format."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_builders import ACC, HOUR, MIN, T0, Harness, caps, ev, ms, policy, settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import (
    AccountState,
    AccountUsage,
    BotUsage,
    EventError,
    PolicySet,
    StateFormatError,
    evaluate,
    reevaluate,
)


@st.composite
def event_runs(draw: st.DrawFn) -> list[tuple[int, str, str, int, int, bool]]:
    """(minutes after T0, bot, category, tokens, credits, conversation started) rows."""
    rows, minute = [], 0
    for _ in range(draw(st.integers(1, 40))):
        minute += draw(st.integers(0, 240))
        rows.append(
            (
                minute,
                draw(st.sampled_from(["bot-1", "bot-2", "bot-3"])),
                draw(st.sampled_from(["text", "vision", "audio", "documents"])),
                draw(st.integers(0, 5_000)),
                draw(st.integers(0, 50_000)),
                draw(st.booleans()),
            )
        )
    return rows


def _harness() -> Harness:
    return Harness(
        policies=[
            policy("p-msg", metric="messages", threshold=7, window=3600, block_s=600),
            policy(
                "p-tok", metric="tokens", threshold=20_000, window=86_400, scope="account_total"
            ),
            policy(
                "p-cr",
                metric="credits",
                threshold=90_000,
                window=600,
                category="text",
                scope="bot",
                bot_id="bot-2",
            ),
        ],
        tenant=settings(timezone="Europe/London", throttle="smart"),
    )


def _drive(h: Harness, rows: list[tuple[int, str, str, int, int, bool]]) -> None:
    for i, (minute, bot, cat, tokens, credits, started) in enumerate(rows):
        h.send(
            ev(
                i,
                T0 + minute * MIN,
                bot=bot,
                category=cat,
                tokens=tokens,
                credits=credits,
                started=started,
            )
        )


def _snapshot(state: AccountState) -> tuple[bytes, dict[str, bytes]]:
    return state.account.to_bytes(), {b: u.to_bytes() for b, u in state.bots.items()}


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=event_runs(), data=st.data())
def test_replaying_applied_events_changes_nothing(
    rows: list[tuple[int, str, str, int, int, bool]], data: st.DataObject
) -> None:
    h = _harness()
    _drive(h, rows)
    before = _snapshot(h.state)
    last_now = T0 + rows[-1][0] * MIN
    replay = data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=1, max_size=10))
    for i in replay:
        minute, bot, cat, tokens, credits, started = rows[i]
        event = ev(
            i,
            T0 + minute * MIN,
            bot=bot,
            category=cat,
            tokens=tokens,
            credits=credits,
            started=started,
        )
        # the same record again (offset at or below the watermark) ...
        _, eff = evaluate(h.state, event, h.policy_set, h.tenant, last_now, partition=0, offset=i)
        assert eff.duplicate and not eff
        # ... and a client resend: same event id at a new offset
        _, eff = evaluate(
            h.state, event, h.policy_set, h.tenant, last_now, partition=0, offset=h.offset
        )
        h.offset += 1
        assert eff.duplicate and not eff
    after = _snapshot(h.state)
    assert after[1] == before[1]
    # only the account's watermark moved (it consumed the resends' offsets)
    restored = AccountUsage.from_bytes(after[0])
    assert restored.day == AccountUsage.from_bytes(before[0]).day
    assert restored.month == AccountUsage.from_bytes(before[0]).month


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=event_runs(), cut=st.integers(0, 40))
def test_state_restored_from_bytes_decides_like_the_live_one(
    rows: list[tuple[int, str, str, int, int, bool]], cut: int
) -> None:
    cut = min(cut, len(rows))
    live = _harness()
    _drive(live, rows[:cut])
    account, bots = _snapshot(live.state)
    restored = _harness()
    restored.state = AccountState.load(account, bots.values())
    restored.offset = live.offset
    for i, (minute, bot, cat, tokens, credits, started) in enumerate(rows[cut:], start=cut):
        event = ev(
            i,
            T0 + minute * MIN,
            bot=bot,
            category=cat,
            tokens=tokens,
            credits=credits,
            started=started,
        )
        a, b = live.send(event), restored.send(event)
        assert [n.notification_id for n in a.notifications] == [
            n.notification_id for n in b.notifications
        ]
        assert {(e.bot_id, e.blocked_until_ms) for e in a.enforcement} == {
            (e.bot_id, e.blocked_until_ms) for e in b.enforcement
        }
    assert live.state.account.day == restored.state.account.day
    assert _snapshot(live.state)[1].keys() == _snapshot(restored.state)[1].keys()


def test_a_bot_table_behind_the_account_table_catches_up_on_replay() -> None:
    h = _harness()
    h.send(ev(0, T0))
    old_bot = h.state.bots["bot-1"].to_bytes()  # the bot's table was written before event 1
    h.send(ev(1, T0 + MIN))
    account = h.state.account.to_bytes()
    state = AccountState.load(account, [old_bot])
    assert state.bots["bot-1"].day[1] == 1
    # replay of offset 1: the account has it (skipped), the bot does not (applied)
    evaluate(state, ev(1, T0 + MIN), h.policy_set, h.tenant, T0 + MIN, partition=0, offset=1)
    assert state.bots["bot-1"].day[1] == 2
    assert state.account.day[1] == 2


def test_day_and_month_totals_follow_the_tenant_timezone() -> None:
    h = Harness(tenant=settings(timezone="America/New_York"))
    before_midnight = ms("America/New_York", 2026, 11, 30, 23, 50)
    after_midnight = ms("America/New_York", 2026, 12, 1, 0, 10)  # 05:10 UTC, same UTC day
    h.send(ev(0, before_midnight, credits=10, category="vision"))
    h.send(ev(1, after_midnight, credits=20, category="vision"))
    acct = h.state.account
    assert (acct.day_key, acct.month_key) == ("2026-12-01", "2026-12")
    assert acct.day[5] == 20  # credits:vision today, local day only
    assert acct.month[5] == 20  # a new local month too
    assert acct.day[1] == 1  # messages today


def test_a_late_event_from_yesterday_counts_in_the_month_not_today() -> None:
    h = Harness(tenant=settings(timezone="Asia/Kathmandu"))
    today = ms("Asia/Kathmandu", 2026, 11, 18, 0, 30)
    h.send(ev(0, today, credits=5))
    h.send(ev(1, today - HOUR, credits=7), now=today + MIN)  # 23:30 yesterday, arrives late
    acct = h.state.account
    assert acct.day[4] == 5
    assert acct.month[4] == 12


def test_tokens_messages_conversations_and_credits_are_counted_per_category() -> None:
    h = Harness()
    h.send(ev(0, T0, tokens=30, credits=100, category="audio", started=True))
    h.send(ev(1, T0, tokens=12, credits=50, category="text", messages=2))
    day = h.state.account.day
    assert day[:4] == [42, 3, 1, 150]  # tokens, messages, conversations, all credits
    assert day[4:] == [50, 0, 100, 0]  # text, vision, audio, documents


def test_bot_and_account_states_serialise_separately_and_round_trip() -> None:
    h = _harness()
    for i in range(30):
        h.send(ev(i, T0 + i * MIN, bot=f"bot-{i % 3}", credits=1_000 * i))
    account = h.state.account.to_bytes()
    assert AccountUsage.from_bytes(account).to_bytes() == account
    for bot in h.state.bots.values():
        data = bot.to_bytes()
        again = BotUsage.from_bytes(data)
        assert again.to_bytes() == data
        assert again.enforcement == bot.enforcement
        assert again.rings == bot.rings
    with pytest.raises(StateFormatError, match="expected"):
        BotUsage.from_bytes(account)  # an account value in the bot table


def test_states_written_by_the_previous_release_v1_are_read_unchanged() -> None:
    # The v1 files were written by the release before the v2 format (rings oldest bucket
    # first, event ids one by one) from this same harness and events.
    h = _harness()
    for i in range(30):
        h.send(ev(i, T0 + i * MIN, bot=f"bot-{i % 3}", credits=1_000 * i))
    data = Path(__file__).parent / "data"
    account = AccountUsage.from_bytes((data / "account_v1.bin").read_bytes())
    bot = BotUsage.from_bytes((data / "bot_v1.bin").read_bytes())
    # v1 kept the fixed window (time // window) of each alert, v3 keeps its time
    for old, new in ((account, h.state.account), (bot, h.state.bots["bot-1"])):
        assert old.legacy_alerted == {p: t // 3_600_000 for p, t in new.alerted.items()}
        assert not old.alerted
        old.alerted = dict(new.alerted)
    assert account == h.state.account
    assert list(account.recent_ids) == list(h.state.account.recent_ids)
    assert bot == h.state.bots["bot-1"]
    assert {k: r.total for k, r in bot.rings.items()} == {
        k: r.total for k, r in h.state.bots["bot-1"].rings.items()
    }
    # Written again, they are the current versions and read back the same.
    assert AccountUsage.from_bytes(account.to_bytes()) == account
    assert BotUsage.from_bytes(bot.to_bytes()).to_bytes()[:5] == b"CSUB\x05"


def test_every_field_of_a_state_round_trips_even_texts_holding_a_nul() -> None:
    # A block, an alert, a daily and a monthly cap, the downgrade and both throttles set;
    # event ids and the fallback text holding NULs take the texts' length-prefixed layout.
    h = Harness(
        policies=[policy("p-msg", metric="messages", threshold=3, window=600, block_s=900)],
        tenant=settings(
            plan="pro",
            auto_downgrade=True,
            throttle="smart",
            caps=caps(text=(1_000, None), vision=(None, 50)),
            fallback_message="back\x00soon {{TIMEFRAME}}",
        ),
    )
    for i in range(25):
        category = "vision" if i == 24 else "text"
        h.send(ev(i, T0 + i * 100, credits=60, category=category, event_id=f"ev\x00{i}"))
    acct, bot = h.state.account, h.state.bots["bot-1"]
    assert acct.caps.keys() == {"text", "vision"} and acct.downgraded_until_ms is not None
    assert bot.blocked_until_ms is not None and bot.loop_until_ms is not None
    assert acct.risk_until_ms is not None
    assert bot.enforcement is not None and bot.enforcement.throttle_reason is not None
    for usage, kind in ((acct, AccountUsage), (bot, BotUsage)):
        data = usage.to_bytes()
        again = kind.from_bytes(data)
        assert again == usage
        assert again.to_bytes() == data
        assert again.enforcement == usage.enforcement
        assert {k: r.total for k, r in again.rings.items()} == {
            k: r.total for k, r in usage.rings.items()
        }
    assert list(AccountUsage.from_bytes(acct.to_bytes()).recent_ids)[-1] == "ev\x0024"
    empty = AccountState(ACC).account
    assert AccountUsage.from_bytes(empty.to_bytes()) == empty


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-3],
        lambda b: b + b"\x00",
        lambda b: b"CSUA\x06" + b[5:],
        lambda b: b"",
    ],
    ids=["truncated", "trailing", "future-version", "empty"],
)
def test_corrupt_state_bytes_are_refused_with_a_clear_error(mangle: object) -> None:
    h = _harness()
    h.send(ev(0, T0))
    data = h.state.account.to_bytes()
    with pytest.raises(StateFormatError):
        AccountUsage.from_bytes(mangle(data))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("event", "match"),
    [
        (ev(0, T0, category="smell"), "unknown category"),
        (ev(0, T0, tokens=-1), "negative"),
        (ev(0, T0, credits=-5), "negative"),
    ],
)
def test_bad_events_are_refused_and_change_nothing(event: object, match: str) -> None:
    state = AccountState(ACC)
    with pytest.raises(EventError, match=match):
        evaluate(state, event, PolicySet([]), settings(), T0)  # type: ignore[arg-type]
    assert state.account.day[1] == 0


def test_an_event_of_another_account_is_refused() -> None:
    event = ev(0, T0)
    event.account_id = "someone-else"
    with pytest.raises(EventError, match="someone-else"):
        evaluate(AccountState(ACC), event, PolicySet([]), settings(), T0)


def test_recent_id_set_is_bounded() -> None:
    h = Harness(state=AccountState(ACC, recent_capacity=8))
    for i in range(20):
        h.send(ev(i, T0 + i))
    assert len(h.state.account.recent_ids) == 8
    assert h.send(ev(19, T0 + 30)).duplicate  # recent: dropped
    assert not h.send(ev(0, T0 + 31)).duplicate  # forgotten long ago: counted again


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tz=st.sampled_from(["America/New_York", "Australia/Lord_Howe", "Pacific/Apia"]),
    steps=st.lists(
        st.tuples(st.integers(0, 20 * HOUR), st.integers(0, 30 * HOUR), st.integers(1, 99)),
        min_size=1,
        max_size=60,
    ),
)
def test_day_and_month_totals_equal_a_brute_force_sum_by_local_date(
    tz: str, steps: list[tuple[int, int, int]]
) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    h = Harness(tenant=settings(timezone=tz))
    now, sent = ms(tz, 2026, 10, 28, 0, 0), []  # crosses a month end and DST changes
    for i, (advance, lateness, credits) in enumerate(steps):
        now += advance
        at = now - lateness  # some events arrive late, even from an earlier day or month
        h.send(ev(i, at, credits=credits), now=now)
        sent.append((datetime.fromtimestamp(at / 1000, zone).date(), credits))
    acct = h.state.account
    day = [c for d, c in sent if d.isoformat() == acct.day_key]
    month = [c for d, c in sent if d.isoformat()[:7] == acct.month_key]
    assert acct.day[4] == sum(day)
    assert acct.month[4] == sum(month)
    assert acct.month[1] == len(month)


# -- v4: the loop detection survives a restore --------------------------------------------


def _looping(restore_after: int | None) -> list[int]:
    """A conversation sends a message every 2 s (21 within a minute is a loop), restored
    from its bytes after ``restore_after`` messages; when the throttle engages."""
    h = Harness(tenant=settings(throttle="smart"))
    for i in range(30):
        if i == restore_after:
            h.state = AccountState.load(
                h.state.account.to_bytes(), [b.to_bytes() for b in h.state.bots.values()]
            )
            reevaluate(h.state, h.policy_set, h.tenant, T0 + i * 2_000, alerts=False, blocks=False)
        h.send(ev(i, T0 + i * 2_000, conv="c-loop" if i % 5 else f"c-{i}"))
    return [n.created_at_ms for n in h.notes("throttle_engaged")]


def test_a_restore_in_the_middle_of_a_loop_engages_the_throttle_as_without_it() -> None:
    # The rings were not serialised: after a worker's crash or a partition move the loop
    # was counted afresh and the throttle engaged 20 messages later than the core walking
    # the same events (the full chaos run's one throttle alert under another id).
    straight = _looping(None)
    assert len(straight) == 1
    for at in (1, 10, 20, 25):
        assert _looping(at) == straight, at


def test_v3_bot_states_load_without_loop_detection() -> None:
    # Written by the release before v4 (5 conversations, p-msg's block running).
    raw = (Path(__file__).parent / "data" / "bot_v3.bin").read_bytes()
    assert raw[:5] == b"CSUB\x03"
    bot = BotUsage.from_bytes(raw)
    assert bot.loops == {} and bot.blocks and bot.blocked_until_ms is not None
    again = BotUsage.from_bytes(bot.to_bytes())
    assert again == bot and again.to_bytes()[:5] == b"CSUB\x05"


def test_loop_rings_round_trip_and_corrupt_ones_are_refused() -> None:
    h = Harness(tenant=settings(throttle="smart"))
    for i in range(40):
        h.send(ev(i, T0 + i * 1_000, conv=f"c-{i % 3}" if i < 30 else f"one-{i}\x00x"))
    bot = h.state.bots["bot-1"]
    again = BotUsage.from_bytes(bot.to_bytes())
    assert list(again.loops) == list(bot.loops)  # first-seen order: which one goes first
    assert {k: v if isinstance(v, int) else list(v) for k, v in again.loops.items()} == {
        k: v if isinstance(v, int) else list(v) for k, v in bot.loops.items()
    }
    raw = bytearray(bot.to_bytes())
    ring = bot.loops["c-0"]
    assert not isinstance(ring, int)
    slot = raw.rfind(ring.tobytes())  # the ring's next-slot index, set out of range
    raw[slot : slot + 8] = (99).to_bytes(8, "little")
    with pytest.raises(StateFormatError):
        BotUsage.from_bytes(bytes(raw))
