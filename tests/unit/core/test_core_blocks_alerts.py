"""Each policy's block holds for its own duration; late events are decided at their own
time; alert ids are per account and event time, one alert per full window (issues 18, 21,
23), each against a brute-force reference where the rule is a computation."""

from __future__ import annotations

from pathlib import Path

from core_builders import ACC, HOUR, MIN, T0, Harness, ev, policy, settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import (
    AccountState,
    AccountUsage,
    BotUsage,
    FallbackLedger,
    Policy,
    PolicySet,
    TenantSettings,
    UsageEvent,
    evaluate,
    gate,
    reevaluate,
)
from capstream.core.notifications import notification_id

SEC = 1000


# -- 23.1: every policy's block holds for its own duration ---------------------------------


def test_a_second_policys_longer_block_holds_after_the_first_one_ends() -> None:
    short = policy("short", threshold=3, window=60, block_s=60, alert=False)
    long = policy("long", metric="tokens", threshold=1000, window=60, block_s=3600, alert=False)
    h = Harness(policies=[short, long])
    for i in range(3):
        h.send(ev(i, T0 + i * SEC, tokens=0))
    assert h.enforcement().blocked_until_ms == T0 + 2 * SEC + 60 * SEC
    h.send(ev(3, T0 + 10 * SEC, tokens=1000, messages=0))
    state = h.enforcement()
    assert (state.blocked_until_ms, state.block_policy_id) == (T0 + 10 * SEC + HOUR, "long")
    h.tick(T0 + 70 * SEC)  # the short block is over, the long one is not
    state = h.enforcement()
    verdict = gate(state, "text", "conv-1", T0 + 70 * SEC, FallbackLedger())
    assert (verdict.action, verdict.reason) == ("paused", "policy_block:long")


def test_a_running_block_is_not_extended_by_its_own_policy() -> None:
    h = Harness(policies=[policy("p", threshold=2, window=60, block_s=120, alert=False)])
    h.send(ev(0, T0))
    h.send(ev(1, T0 + SEC))
    for i in range(2, 20):
        h.send(ev(i, T0 + i * SEC))
    assert h.enforcement().blocked_until_ms == T0 + SEC + 120 * SEC


BLOCK_POLICIES = [
    policy("m-60", threshold=3, window=60, block_s=60, alert=False),
    policy("m-300", threshold=6, window=300, block_s=900, alert=False),
    policy("t-120", metric="tokens", threshold=900, window=120, block_s=240, alert=False),
    policy("own", threshold=4, window=120, block_s=600, scope="bot", bot_id="bot-1"),
    policy("total", threshold=9, window=180, block_s=420, scope="account_total", alert=False),
]


def _brute_force_blocks(
    rows: list[tuple[int, str, int]], policies: list[Policy]
) -> list[dict[str, tuple[int, str | None]]]:
    """Per event: each bot's (paused until, policy holding it longest), computed per policy
    from every event so far (bucketed like the rings: window W cut in 60 buckets)."""
    ends: dict[tuple[str, str], int] = {}  # (usage, policy) -> end of its last block
    seen: list[tuple[int, str, int]] = []
    out = []
    for t, bot, tokens in rows:
        seen.append((t, bot, tokens))
        for p in policies:
            usage = "*" if p.scope == "account_total" else bot
            if p.scope == "bot" and p.bot_id != bot:
                continue
            if p.metric == "tokens" and not tokens:
                continue  # an event adds to the windows of its metrics only
            g = p.window_seconds * 1000 // 60
            amount = sum(
                (tok if p.metric == "tokens" else 1)
                for at, b, tok in seen
                if (usage == "*" or b == bot) and at // g >= t // g - 60
            )
            end = ends.get((usage, p.policy_id))
            if amount >= p.threshold and (end is None or end <= t):
                assert p.block is not None
                ends[(usage, p.policy_id)] = t + p.block.duration_seconds * 1000
        now = t
        paused: dict[str, tuple[int, str | None]] = {}
        for b in ("bot-1", "bot-2"):
            best, name = 0, None
            for (usage, pid), end in ends.items():
                if usage in ("*", b) and end > now and end > best:
                    best, name = end, pid
            paused[b] = (best, name)
        out.append(paused)
    return out


@st.composite
def ordered_traffic(draw: st.DrawFn) -> list[tuple[int, str, int]]:
    """(ms after T0, bot, tokens) in time order, bursts and pauses mixed."""
    at, rows = 0, []
    for _ in range(draw(st.integers(1, 70))):
        at += draw(st.sampled_from([0, 100, 700, 2_000, 9_000, 40_000, 200_000]))
        rows.append((at, draw(st.sampled_from(["bot-1", "bot-2"])), draw(st.integers(0, 400))))
    return rows


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ordered_traffic())
def test_blocks_of_several_policies_match_a_per_policy_brute_force(
    rows: list[tuple[int, str, int]],
) -> None:
    h = Harness(policies=BLOCK_POLICIES)
    expected = _brute_force_blocks([(T0 + dt, b, tok) for dt, b, tok in rows], BLOCK_POLICIES)
    for i, (dt, bot, tokens) in enumerate(rows):
        now = T0 + dt
        h.send(ev(i, now, bot=bot, tokens=tokens))
        for b in ("bot-1", "bot-2"):
            want_until, want_pid = expected[i][b]
            e = h.state.enforcement(b if b in h.state.bots else "*")  # "*": a bot not seen
            until = e.blocked_until_ms if e is not None else None
            got = until if until is not None and until > now else 0
            assert got == want_until, (i, b)
            if want_until:
                assert e is not None
                verdict = gate(e, "text", "c", now, FallbackLedger())
                assert verdict.reason == f"policy_block:{e.block_policy_id}"
                # the named policy is one whose block ends last (ties: either)
                assert e.block_policy_id is not None
                assert want_pid is not None


# -- 23.2: a late event is decided against the window ending at its own time ---------------


def test_a_late_event_is_judged_by_its_own_window_not_the_clocks() -> None:
    h = Harness(policies=[policy("p", threshold=3, window=300, block_s=600, alert=False)])
    h.send(ev(0, T0))
    h.send(ev(1, T0 + 250 * SEC))
    # 170 s late: the window ending at +100 s holds 2 messages (+0 s and itself); the one
    # at +250 s is after it and does not count
    h.send(ev(2, T0 + 100 * SEC), now=T0 + 270 * SEC)
    assert h.enforcement().blocked_until_ms is None
    h.send(ev(3, T0 + 301 * SEC))  # the window at +301 s: +100, +250 and +301 s
    assert h.enforcement().blocked_until_ms == T0 + 301 * SEC + 600 * SEC


def test_a_late_event_that_crossed_at_its_time_blocks_from_its_time() -> None:
    h = Harness(policies=[policy("p", threshold=3, window=60, block_s=600)])
    for i in range(2):
        h.send(ev(i, T0 + i * SEC))
    eff = h.send(ev(2, T0 + 2 * SEC), now=T0 + 50 * SEC)  # 48 s late; its window holds 3
    assert h.enforcement().blocked_until_ms == T0 + 2 * SEC + 600 * SEC
    (alert,) = eff.notifications
    assert alert.window_start_ms == T0 + 2 * SEC - 60 * SEC


LATE_POLICIES = [
    policy("m-60", threshold=3, window=60),
    policy("m-600", threshold=5, window=600),
    policy("t-120", metric="tokens", threshold=700, window=120),
    policy("tot", threshold=6, window=60, scope="account_total"),
]


def _brute_force_alerts(
    rows: list[tuple[int, str, int]], policies: list[Policy]
) -> list[tuple[str, str, int]]:
    """(policy, usage, alert time) in order. Events arrive in ``rows`` order, each decided at
    its own time against the events that arrived before it and itself, in the window ending at
    its time as far as a ring of 61 buckets still holds it (usage older than the newest bucket
    seen minus 60 buckets is gone); one alert per full window."""
    applied: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (usage, policy) -> (b, v)
    heads: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], int] = {}
    out = []
    for t, bot, tokens in rows:
        for p in policies:
            usage = "*" if p.scope == "account_total" else bot
            v = tokens if p.metric == "tokens" else 1
            if not v:
                continue
            key = (usage, p.policy_id)
            w = p.window_seconds * 1000
            g = w // 60
            b = t // g
            head = heads.get(key, -1)
            if head >= 0 and b < head - 60:
                continue  # older than the ring: not counted, not decided
            heads[key] = max(head, b)
            applied.setdefault(key, []).append((b, v))
            lo = max(b, head) - 60
            total = sum(x for bb, x in applied[key] if lo <= bb <= b)
            prev = last.get(key)
            if total >= p.threshold and (prev is None or t >= prev + w):
                last[key] = t
                out.append((p.policy_id, usage, t))
    return out


@st.composite
def late_traffic(draw: st.DrawFn) -> list[tuple[int, str, int]]:
    """(ms after T0, bot, tokens): a clock moving forward, each event up to 12 min late."""
    clock, rows = 0, []
    for _ in range(draw(st.integers(1, 80))):
        clock += draw(st.sampled_from([0, 300, 2_000, 15_000, 60_000]))
        late = draw(st.sampled_from([0, 0, 0, 1_000, 30_000, 170_000, 720_000]))
        rows.append((max(0, clock - late), draw(st.sampled_from(["bot-1", "bot-2"])),
                     draw(st.integers(0, 300))))  # fmt: skip
    return rows


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=late_traffic())
def test_late_events_decide_alerts_like_a_brute_force_of_their_own_windows(
    rows: list[tuple[int, str, int]],
) -> None:
    h = Harness(policies=LATE_POLICIES)
    clock = 0
    for i, (dt, bot, tokens) in enumerate(rows):
        clock = max(clock, dt)
        h.send(ev(i, T0 + dt, bot=bot, tokens=tokens), now=T0 + clock)
    got = [(n.policy_id, n.bot_id, n.window_start_ms) for n in h.notes("policy_alert")]
    want = [
        (pid, usage, t - p.window_seconds * 1000)
        for pid, usage, t in _brute_force_alerts(
            [(T0 + dt, b, tok) for dt, b, tok in rows], LATE_POLICIES
        )
        for p in LATE_POLICIES
        if p.policy_id == pid
    ]
    assert sorted(got) == sorted(want)  # within one event the account's policies go first


# -- 18.6 / 21.2: one alert per full window, ids from the crossing event's time -----------


def test_a_sustained_breach_across_a_fixed_window_boundary_sends_one_alert() -> None:
    h = Harness(policies=[policy("p", threshold=3, window=60)])
    boundary = (T0 // MIN + 1) * MIN
    for i in range(12):  # 3 messages before the boundary, the rest straddling it
        h.send(ev(i, boundary - 5 * SEC + i * SEC))
    assert len(h.notes("policy_alert")) == 1


def test_an_alert_replayed_under_a_later_clock_keeps_its_id() -> None:
    pol = [policy("p", threshold=3, window=60)]
    crossed = (T0 // MIN) * MIN + 55 * SEC  # :55 of a 60 s window

    def run(clock: int) -> str:
        h = Harness(policies=pol)
        for i in range(3):
            h.send(ev(i, crossed - 2 * SEC + i * SEC), now=max(clock, crossed + i * SEC))
        (note,) = h.notes("policy_alert")
        return note.notification_id

    first = run(crossed)
    replayed = run(crossed + 8 * SEC)  # the restart's clock is at :03 of the next window
    assert first == replayed


def test_a_restore_leaves_alerts_to_the_event_that_crossed() -> None:
    # Crash after the crossing event was counted, before its alert's state was flushed:
    # on restore the alert waits for the replayed event, whose id is the first run's.
    pol = PolicySet([policy("p", threshold=3, window=60)])
    h = Harness(policies=list(pol.policies))
    for i in range(3):
        h.send(ev(i, T0 + i * SEC))
    (sent,) = h.notes("policy_alert")
    h2 = Harness(policies=list(pol.policies))
    for i in range(2):
        h2.send(ev(i, T0 + i * SEC))
    restored = AccountState.load(
        h2.state.account.to_bytes(), [b.to_bytes() for b in h2.state.bots.values()]
    )
    _, eff = reevaluate(restored, pol, h.tenant, T0 + 8 * SEC, alerts=False)
    assert not eff.notifications
    _, eff = evaluate(restored, ev(2, T0 + 2 * SEC), pol, h.tenant, T0 + 9 * SEC,
                      partition=0, offset=2)  # fmt: skip
    (again,) = eff.notifications
    assert again.notification_id == sent.notification_id


# -- 21.1: ids include the account; the previous release's id travels with the alert -------


def test_alerts_of_two_accounts_with_the_same_policy_and_bot_get_different_ids() -> None:
    ids = []
    for account in ("acc-a", "acc-b"):
        p = Policy(
            policy_id="p-hour", account_id=account, name="hour", metric="messages",
            threshold=1, window_seconds=3600, scope="account_each_bot", bot_id=None,
            alert=policy().alert, block=None,
        )  # fmt: skip
        state = AccountState(account)
        e = UsageEvent("e0", account, "bot-1", "c", "text", "m", 100, 0, 1, False, 0, T0)
        _, eff = evaluate(state, e, PolicySet([p]), TenantSettings(account), T0)
        (note,) = eff.notifications
        assert note.account_id == account
        ids.append(note)
    assert ids[0].notification_id != ids[1].notification_id
    # the id the previous release gave (no account) is carried for the notifier's sent-log
    old = notification_id("policy", "p-hour", "bot-1", T0 // HOUR * HOUR)
    assert ids[0].previous_ids == ids[1].previous_ids == (old,)


# -- 23.4: a policy alert names its bot ----------------------------------------------------


def test_a_policy_alert_names_its_bot_in_the_record_and_the_email() -> None:
    h = Harness(
        policies=[
            policy("each", threshold=1),
            policy("total", threshold=1, scope="account_total"),
        ]
    )
    h.send(ev(0, T0, bot="bot-7"))
    by_policy = {n.policy_id: n for n in h.notes("policy_alert")}
    assert by_policy["each"].bot_id == "bot-7"
    assert "Bot: bot-7" in by_policy["each"].body.splitlines()
    assert by_policy["total"].bot_id == "*"


# -- persisted states of the release before ------------------------------------------------


def test_v2_states_load_with_their_alerts_and_blocks() -> None:
    # Written by the release before v3 from tests/unit/core/test_core_usage.py's harness and
    # 30 events a minute apart (bot-1's p-msg alert at T0 + 21 min, in the 12:00 hour).
    data = Path(__file__).parent / "data"
    account = AccountUsage.from_bytes((data / "account_v2.bin").read_bytes())
    bot = BotUsage.from_bytes((data / "bot_v2.bin").read_bytes())
    assert bot.legacy_alerted == {"p-msg": T0 // HOUR}
    state = AccountState(ACC, account=account, bots=[bot])
    pol = PolicySet([policy("p-msg", threshold=7, window=3600, block_s=600)])
    reevaluate(state, pol, settings(), T0 + 30 * MIN, alerts=False)
    assert state.bots["bot-1"].alerted == {"p-msg": T0 // HOUR * HOUR}
    # the old rule (once per fixed hour) still holds for the hour it was sent in
    _, eff = evaluate(state, ev(100, T0 + 59 * MIN), pol, settings(), T0 + 59 * MIN)
    assert not eff.notifications
    assert BotUsage.from_bytes(state.bots["bot-1"].to_bytes()).alerted == {
        "p-msg": T0 // HOUR * HOUR
    }
    old_block = BotUsage(ACC, bot_id="b", blocked_until_ms=T0, block_policy_id="x")
    assert old_block.blocked_until_ms == T0


# -- 18.8: a new policy counts what the rings already hold ---------------------------------


def test_a_new_policy_counts_usage_already_in_its_window() -> None:
    # 15:00, a one-hour policy is added; the account has a one-day policy on messages, whose
    # ring holds 14:00-15:00 (in 24-minute buckets).
    h = Harness(policies=[policy("day", threshold=10_000, window=86_400)])
    for i in range(50):
        h.send(ev(i, T0 + i * MIN))
    now = T0 + 60 * MIN
    new = policy("new-hour", threshold=40, window=3600, block_s=600)
    _, eff = reevaluate(h.state, PolicySet([*h.policies, new]), h.tenant, now)
    (blocked,) = (e for e in eff.enforcement if e.bot_id == "bot-1")
    assert (blocked.blocked_until_ms, blocked.block_policy_id) == (now + 600_000, "new-hour")
    assert h.state.bots["bot-1"].rings[(1, HOUR)].total_at(now) == 50


def test_a_ring_seeded_from_a_wider_ring_never_misses_usage_in_its_window() -> None:
    # Seeding from wider buckets moves no usage earlier: the seeded total is at least the
    # exact one, and over by at most one source bucket at the window's oldest edge.
    from capstream.core.windows import Ring

    day = Ring(86_400_000)
    times = [T0 + i * 7 * MIN for i in range(200)]
    for t in times:
        day.add(t, 1)
    end = times[-1]
    for delay in (0, 5 * MIN, 30 * MIN, HOUR, 2 * HOUR):
        hour = Ring(HOUR)
        assert hour.seed_from(day, end + delay)
        now = end + delay
        exact = sum(1 for t in times if now - HOUR < t <= now)
        edge = sum(1 for t in times if now - HOUR - 24 * MIN < t <= now - HOUR)
        assert exact <= hour.total_at(now) <= exact + edge


def test_the_api_can_tell_what_a_new_policys_window_counts() -> None:
    from capstream.core.seeding import NONE, PARTIAL, SHARED, WIDER_BUCKETS, window_seeding

    day = policy("day", window=86_400)
    hour = policy("hour", window=3600)
    new_hour = policy("new", window=3600, threshold=40)
    assert window_seeding(new_hour, [day]).kind == WIDER_BUCKETS
    assert "24 minutes" in window_seeding(new_hour, [day]).message
    assert window_seeding(new_hour, [hour]).kind == SHARED
    assert window_seeding(policy("2h", window=7200), [hour]).kind == PARTIAL
    # 2-minute buckets are too coarse for a 1-minute window; 3-second ones do for 2 minutes
    assert window_seeding(policy("m", window=60), [policy("x", window=7200)]).kind == NONE
    assert window_seeding(policy("m", window=120), [policy("x", window=180)]).kind == (
        WIDER_BUCKETS
    )
    tokens = policy("tok", metric="tokens", window=3600)
    assert window_seeding(tokens, [day]).kind == NONE  # another metric cannot seed it
    # account_total counts in the account's rings: each-bot ones do not seed it
    total = policy("t", window=3600, scope="account_total")
    assert window_seeding(total, [day]).kind == NONE
    assert window_seeding(total, [policy("td", window=86_400, scope="account_total")]).kind == (
        WIDER_BUCKETS
    )


def test_a_v2_state_with_a_running_block_keeps_it_and_takes_a_second_policys() -> None:
    # Written by the release before v3: "short" blocked bot-1 at T0 + 2 s until T0 + 62 s.
    data = Path(__file__).parent / "data"
    bot = BotUsage.from_bytes((data / "bot_v2_blocked.bin").read_bytes())
    account = AccountUsage.from_bytes((data / "account_v2_blocked.bin").read_bytes())
    assert bot.blocks == {"short": T0 + 62 * SEC}
    short = policy("short", threshold=3, window=60, block_s=60)
    long = policy("long", metric="tokens", threshold=1000, window=60, block_s=3600, alert=False)
    pol = PolicySet([short, long])
    state = AccountState(ACC, account=account, bots=[bot])
    _, eff = reevaluate(state, pol, settings(), T0 + 5 * SEC, alerts=False)
    assert state.enforcement("bot-1").blocked_until_ms == T0 + 62 * SEC  # type: ignore[union-attr]
    _, eff = evaluate(state, ev(7, T0 + 10 * SEC, tokens=1000), pol, settings(), T0 + 10 * SEC)
    assert not eff.notifications  # short's alert of this minute went out before the upgrade
    assert state.enforcement("bot-1").block_policy_id == "long"  # type: ignore[union-attr]
    assert state.in_force("bot-1", T0 + 70 * SEC).blocked_until_ms == (  # type: ignore[union-attr]
        T0 + 10 * SEC + HOUR
    )
