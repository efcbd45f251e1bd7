"""Whole-core properties over random traffic: blocks vs a brute-force oracle, versions,
deadlines, and verdicts consistent with the enforcement state."""

from __future__ import annotations

from core_builders import MIN, T0, Harness, caps, ev, policy, settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import FallbackLedger, gate, next_deadline
from capstream.core.windows import bucket_width_ms

BOTS = ["bot-1", "bot-2", "bot-3"]
CATS = ["text", "vision", "audio", "documents"]


@st.composite
def traffic(draw: st.DrawFn) -> list[tuple[int, str, str, str, int]]:
    """(ms after T0, bot, conversation, category, credits) in time order."""
    at, rows = 0, []
    for _ in range(draw(st.integers(1, 80))):
        at += draw(st.integers(0, 3 * MIN))
        rows.append(
            (
                at,
                draw(st.sampled_from(BOTS)),
                draw(st.sampled_from(["c1", "c2", "c3"])),
                draw(st.sampled_from(CATS)),
                draw(st.integers(0, 400)),
            )
        )
    return rows


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=traffic(), threshold=st.integers(2, 12), window_min=st.sampled_from([1, 5, 60]))
def test_blocks_never_miss_a_breach_and_never_fire_more_than_a_bucket_early(
    rows: list[tuple[int, str, str, str, int]], threshold: int, window_min: int
) -> None:
    window = window_min * MIN
    g = bucket_width_ms(window)
    h = Harness(policies=[policy(threshold=threshold, window=window_min * 60, block_s=3600)])
    seen: dict[str, list[int]] = {b: [] for b in BOTS}
    for i, (dt, bot, conv, cat, credits) in enumerate(rows):
        now = T0 + dt
        was_blocked = (
            (h.state.bots[bot].blocked_until_ms or 0) > now if bot in h.state.bots else False
        )
        h.send(ev(i, now, bot=bot, conv=conv, category=cat, credits=credits))
        seen[bot].append(now)
        exact = sum(1 for t in seen[bot] if now - window < t <= now)
        edge = sum(1 for t in seen[bot] if now - window - g < t <= now - window)
        blocked = (h.state.bots[bot].blocked_until_ms or 0) > now
        if exact >= threshold:
            assert blocked  # never misses usage inside the window
        if blocked and not was_blocked:
            assert exact + edge >= threshold  # fires at most one bucket early


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=traffic(), daily=st.integers(0, 3_000), monthly=st.integers(0, 20_000))
def test_versions_deadlines_and_verdicts_stay_consistent(
    rows: list[tuple[int, str, str, str, int]], daily: int, monthly: int
) -> None:
    h = Harness(
        policies=[
            policy("each", threshold=6, window=300, block_s=120),
            policy(
                "total",
                scope="account_total",
                metric="credits",
                threshold=5_000,
                window=3600,
                block_s=600,
            ),
        ],
        tenant=settings(
            plan="enterprise",
            auto_downgrade=True,
            throttle="smart",
            timezone="Pacific/Apia",
            caps=caps(text=(daily, monthly), vision=(daily // 2, None), audio=(None, monthly)),
        ),
    )
    last: dict[str, tuple[int, object]] = {}
    ledger = FallbackLedger()
    now = T0
    for i, (dt, bot, conv, cat, credits) in enumerate(rows):
        now = T0 + dt
        deadline = next_deadline(h.state)
        if deadline is not None and deadline < now:
            # a timer that fires early changes nothing; at the deadline it moves on
            assert not h.tick(deadline - 1)
            h.tick(deadline)
            after = next_deadline(h.state)
            assert after is None or after > deadline
        eff = h.send(ev(i, now, bot=bot, conv=conv, category=cat, credits=credits))
        assert len({e.bot_id for e in eff.enforcement}) == len(eff.enforcement)
        for e in eff.enforcement:
            if e.bot_id in last:
                prev_version, prev = last[e.bot_id]
                assert e.version > prev_version
                assert e != prev  # emitted only on change
            last[e.bot_id] = (e.version, e)
        deadline = next_deadline(h.state)
        assert deadline is None or deadline > now
        state = h.enforcement(bot)
        for c in CATS:
            v = gate(state, c, conv, now, ledger)
            if state.blocked_until_ms is not None and now < state.blocked_until_ms:
                assert v.action == "paused"
            elif c in state.caps:
                assert v.action in ("fallback", "skip") and v.cap_hit is not None
                assert v.action == "skip" or c == "text"
            else:
                assert v.action == "allow" and v.model == state.model
