"""Quiet policies (their alert sent for this window, their block running) are skipped by the
events that follow; the decisions must be exactly those of checking every policy always."""

from __future__ import annotations

from core_builders import ACC, T0, ev, policy, settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import AccountState, Effects, Notification, PolicySet, evaluate, expire
from capstream.core.clock import EventClock
from capstream.core.state import unmute_all

BOTS = ["bot-1", "bot-2"]
POLICIES = PolicySet(
    [
        policy("alert-1m", threshold=3, window=60),
        policy("block-5m", threshold=5, window=300, block_s=120, alert=False),
        policy("both-1h", metric="tokens", threshold=900, window=3600, block_s=600),
        policy("bot-2", threshold=2, window=60, scope="bot", bot_id="bot-2", block_s=60),
        policy("total", threshold=8, window=600, scope="account_total", block_s=300),
        policy("total-alert", metric="tokens", threshold=700, window=60, scope="account_total"),
    ]
)
TENANT = settings(throttle="smart")


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[str, int, str, int]]:
    """(kind, now offset, bot, tokens): events, with the clock sometimes stepping back, and
    timer runs (expire)."""
    at, rows = 0, []
    for _ in range(draw(st.integers(1, 120))):
        at = max(0, at + draw(st.integers(-20_000, 40_000)))
        kind = draw(st.sampled_from(["event"] * 9 + ["expire"]))
        rows.append((kind, at, draw(st.sampled_from(BOTS)), draw(st.integers(0, 300))))
    return rows


Log = list[tuple[tuple[object, ...], tuple[Notification, ...], bool]]


def _run(
    rows: list[tuple[str, int, str, int]], *, check_all: bool = False
) -> tuple[Log, AccountState, bool]:
    """Walk ``rows``; ``check_all``: un-quiet every policy after each step (the reference)."""
    state = AccountState(ACC)
    log: Log = []
    muted = False
    for i, (kind, at, bot, tokens) in enumerate(rows):
        now = T0 + at
        if kind == "expire" and state.view is not None:
            _, eff = expire(state, now)
        else:
            event = ev(i, now - 500, bot=bot, tokens=tokens)
            _, eff = evaluate(state, event, POLICIES, TENANT, now, partition=0, offset=i)
        log.append((eff.enforcement, eff.notifications, eff.duplicate))
        muted = muted or any(u.quiet for u in (state.account, *state.bots.values()))
        if check_all:
            unmute_all(state)
    return log, state, muted


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=steps())
def test_skipping_quiet_policies_decides_exactly_like_checking_them_all(
    rows: list[tuple[str, int, str, int]],
) -> None:
    log, state, _ = _run(rows)
    ref_log, ref_state, _ = _run(rows, check_all=True)
    assert log == ref_log
    assert state.account.to_bytes() == ref_state.account.to_bytes()
    assert {b: u.to_bytes() for b, u in state.bots.items()} == {
        b: u.to_bytes() for b, u in ref_state.bots.items()
    }


def test_a_policy_over_its_threshold_is_skipped_until_its_window_or_block_ends() -> None:
    rows = [("event", i * 1_000, "bot-1", 10) for i in range(10)]
    rows += [("event", 200_000 + i * 1_000, "bot-1", 10) for i in range(10)]
    log, state, muted = _run(rows)
    assert muted  # the property test above compares something that happens
    alerts = [n for _, notes, _ in log for n in notes if n.policy_id == "alert-1m"]
    assert len(alerts) == 2  # once per one-minute window it is over the threshold in
    assert _run(rows, check_all=True)[0] == log
    assert state.bots["bot-1"].quiet.keys() >= {"alert-1m", "block-5m"}


HOURLY = PolicySet(
    [
        policy("hourly", metric="tokens", threshold=2_000, window=3600, block_s=900, warn=None),
        policy("total", metric="tokens", threshold=9_000, window=1800, scope="account_total",
               block_s=600),
        policy("daily", metric="tokens", threshold=6_000, period="day", block_s=1200),
    ]
)  # fmt: skip
HOURLY_BOTS = [f"bot-{i}" for i in range(5)]


@st.composite
def hours(draw: st.DrawFn) -> list[tuple[int, str, int]]:
    """(seconds since the previous event, bot, tokens): hours of traffic from several bots."""
    return [
        (draw(st.integers(0, 240)), draw(st.sampled_from(HOURLY_BOTS)), draw(st.integers(0, 400)))
        for _ in range(draw(st.integers(1, 300)))
    ]


def _walk_event_time(
    rows: list[tuple[int, str, int]], *, check_all: bool
) -> tuple[list[list[Effects]], AccountState]:
    """The simulation's path (EventClock: expiries at event time, then the event);
    ``check_all``: every policy un-quieted after each step (the reference)."""
    clock = EventClock()
    state = AccountState(ACC)
    log = []
    at = T0
    for i, (gap, bot, tokens) in enumerate(rows):
        at += gap * 1000
        log.append(clock.evaluate(state, ev(i, at, bot=bot, tokens=tokens), HOURLY, TENANT))
        if check_all:
            unmute_all(state)
    return log, state


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=hours())
def test_quiet_policies_of_other_bots_stay_quiet_through_a_block_end_and_decide_the_same(
    rows: list[tuple[int, str, int]],
) -> None:
    """A block's end re-checks only its own bot: the others' quiet policies (warning levels
    sent this hour, their own blocks) stay quiet until their own time; the decisions are
    those of checking every policy on every event."""
    log, state = _walk_event_time(rows, check_all=False)
    ref_log, ref_state = _walk_event_time(rows, check_all=True)
    assert [[(e.enforcement, e.notifications) for e in out] for out in log] == [
        [(e.enforcement, e.notifications) for e in out] for out in ref_log
    ]
    assert state.account.to_bytes() == ref_state.account.to_bytes()
    assert {b: u.to_bytes() for b, u in state.bots.items()} == {
        b: u.to_bytes() for b, u in ref_state.bots.items()
    }


def test_a_block_ending_leaves_the_other_bots_quiet_policies_quiet() -> None:
    rows = [(10, "bot-0", 400) for _ in range(8)]  # over "hourly": blocked for 900 s
    rows += [(10, "bot-1", 400) for _ in range(3)]  # at its 50% warning level
    rows += [(960, "bot-0", 10)]  # bot-0's block ended (the clock's expiry), bot-1's hour not
    log, state = _walk_event_time(rows, check_all=False)
    kinds = [n.kind for out in log for e in out for n in e.notifications]
    assert "policy_alert" in kinds and "policy_warning" in kinds
    assert "hourly\x1f50" in state.bots["bot-1"].quiet  # its warning stays sent this hour
    assert _walk_event_time(rows, check_all=True)[0] == log
