"""Throughput of the decision core: evaluate() per event and gate() per call (one thread).

Run: ``.venv/bin/python benchmarks/bench_core.py [--events N] [--calls N] [--profile]``.
Prints figures; it is not a test. Targets: evaluate >= 100,000 events/s for an account with
10 policies and caps in 4 categories; gate >= 500,000 calls/s.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import time
from contextlib import nullcontext

from capstream.core import (
    AccountState,
    AlertAction,
    BlockAction,
    CategoryCaps,
    EnforcementState,
    FallbackLedger,
    Policy,
    PolicySet,
    TenantSettings,
    UsageEvent,
    evaluate,
    gate,
)
from capstream.core.models import CapStatus

ACCOUNT = "acct-bench"
START_MS = 1_795_000_000_000  # 2026-11-18
CATEGORY_MIX = ["text"] * 7 + ["vision", "audio", "documents"]


def policies() -> PolicySet:
    """Ten policies over every scope, metric and a spread of windows."""
    alert, owner = AlertAction(("ops@example.com",)), AlertAction(())
    block = BlockAction(600)

    def p(i: int, metric: str, threshold: int, window: int, scope: str, **kw: object) -> Policy:
        return Policy(
            f"p{i}",
            ACCOUNT,
            f"policy {i}",
            metric,
            threshold,
            window,
            scope,
            kw.pop("bot_id", None),
            kw.pop("alert", alert),
            kw.pop("block", None),
            **kw,
        )  # type: ignore[arg-type]

    return PolicySet(
        [
            p(1, "tokens", 150_000_000, 3600, "account_each_bot", block=block),
            p(2, "messages", 2_000, 60, "account_each_bot"),
            p(3, "conversations", 500, 86_400, "account_each_bot", alert=owner),
            p(4, "credits", 50_000_000_000, 7 * 86_400, "account_each_bot", category="text"),
            p(5, "messages", 8_000, 300, "bot", bot_id="bot-0", block=block),
            p(6, "tokens", 10_000_000, 86_400, "bot", bot_id="bot-1"),
            p(7, "credits", 9_000_000_000, 3600, "bot", bot_id="bot-2", alert=None, block=block),
            p(8, "tokens", 200_000_000, 86_400, "account_total"),
            p(9, "messages", 1_000_000, 3600, "account_total", block=block),
            p(10, "credits", 10**12, 31 * 86_400, "account_total"),
        ]
    )


def settings() -> TenantSettings:
    caps = {
        "text": CategoryCaps(daily_micro=10**13, monthly_micro=10**14),
        "vision": CategoryCaps(daily_micro=10**12, monthly_micro=10**13),
        "audio": CategoryCaps(daily_micro=10**12, monthly_micro=None),
        "documents": CategoryCaps(daily_micro=None, monthly_micro=10**13),
    }
    return TenantSettings(
        ACCOUNT,
        timezone="America/New_York",
        language="en",
        plan="pro",
        owner_email="owner@example.com",
        caps=caps,
        auto_downgrade=True,
        throttle="smart",
    )


def events(n: int, rate_per_s: int = 200) -> list[UsageEvent]:
    rnd = random.Random(7)
    step = 1000 // rate_per_s
    out = []
    for i in range(n):
        conv = rnd.randrange(2_000)
        out.append(
            UsageEvent(
                event_id=f"ev-{i}",
                account_id=ACCOUNT,
                bot_id=f"bot-{conv % 10}",
                conversation_id=f"conv-{conv}",
                category=rnd.choice(CATEGORY_MIX),
                model="claude-sonnet-4-6",
                tokens_in=rnd.randrange(50, 2_000),
                tokens_out=rnd.randrange(20, 800),
                messages=1,
                conversation_started=rnd.random() < 0.05,
                credits_micro=rnd.randrange(1_000, 40_000),
                occurred_at_ms=START_MS + i * step - rnd.randrange(0, 200),
            )
        )
    return out


def bench_evaluate(n: int, profile: bool, rounds: int = 20) -> None:
    """Feed ``n`` events in ``rounds`` chunks; report the best chunk and the whole run."""
    ps, st = policies(), settings()
    evs = events(n)
    state = AccountState(ACCOUNT)
    step = 1000 // 200
    warm = events(1)[0]
    warm.event_id = "warm"  # the first event builds rings and enforcement states
    evaluate(state, warm, ps, st, START_MS - 1000, partition=0, offset=0)
    prof = cProfile.Profile() if profile else None
    notes = states = 0
    chunk = n // rounds
    times: list[float] = []
    cpu: list[float] = []
    for r in range(rounds):
        lo, hi = r * chunk, (r + 1) * chunk
        if prof:
            prof.enable()
        c0 = time.process_time()
        t0 = time.perf_counter()
        for i in range(lo, hi):
            _, eff = evaluate(state, evs[i], ps, st, START_MS + i * step, partition=0, offset=i + 1)
            notes += len(eff.notifications)
            states += len(eff.enforcement)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if prof:
            prof.disable()
    best, total = min(times), sum(times)
    print(
        f"evaluate: best of {rounds} rounds {chunk / best:,.0f} events/s "
        f"({best / chunk * 1e6:.2f} us/event; CPU time {chunk / min(cpu):,.0f} events/s); "
        f"all {n:,} events {n / total:,.0f} events/s. "
        f"10 policies, caps in 4 categories, 10 bots, smart throttle, auto-downgrade; "
        f"{states} enforcement changes, {notes} notifications"
    )
    acct = state.account.to_bytes()
    bots = [b.to_bytes() for b in state.bots.values()]
    # Best of rounds by CPU time: one serialisation is short, and the machine is shared.
    to_bytes: dict[str, float] = {}
    for kind, values in (("account", [state.account]), ("bot", list(state.bots.values()))):
        best = float("inf")
        for _ in range(10):
            c0 = time.process_time()
            for _ in range(50):
                for v in values:
                    v.to_bytes()
            best = min(best, time.process_time() - c0)
        to_bytes[kind] = best / 50 / len(values) * 1e6
    print(
        f"to_bytes: account {len(acct):,} B {to_bytes['account']:.1f} us, "
        f"bot avg {sum(map(len, bots)) // len(bots):,} B {to_bytes['bot']:.1f} us "
        f"(best of 10 rounds, CPU time)"
    )
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def _state(**kw: object) -> EnforcementState:
    base: dict[str, object] = {
        "account_id": ACCOUNT,
        "bot_id": "bot-0",
        "version": 1,
        "updated_at_ms": START_MS,
        "blocked_until_ms": None,
        "block_policy_id": None,
        "model": "claude-sonnet-4-6",
        "downgraded_until_ms": None,
        "batching_interval_s": 3,
        "throttled_until_ms": None,
        "throttle_reason": None,
        "caps": {},
        "plan": "pro",
        "fallback_text_daily": "back tomorrow",
        "fallback_text_monthly": "back next week",
        "premium_model": "claude-sonnet-4-6",
    }
    base.update(kw)
    return EnforcementState(**base)  # type: ignore[arg-type]


def bench_gate(n: int, rounds: int = 10) -> None:
    """Best of ``rounds`` runs of ``n`` calls per kind of enforcement state."""
    convs = [f"conv-{i}" for i in range(1_000)]
    cats = [CATEGORY_MIX[i % len(CATEGORY_MIX)] for i in range(1_000)]
    capped = CapStatus("daily", "2026-11-18", START_MS + 3_600_000)
    hour = START_MS + 3_600_000
    cases = {
        "allow (common case)": _state(),
        "allow, downgraded": _state(downgraded_until_ms=hour, model="claude-haiku"),
        "vision capped (other categories allowed)": _state(caps={"vision": capped}),
        "text capped (fallback once, then skip)": _state(caps={"text": capped}),
        "throttled 60 s (reply spacing via ledger)": _state(
            batching_interval_s=60, throttled_until_ms=hour, throttle_reason="budget_at_risk"
        ),
        "paused by a policy block": _state(blocked_until_ms=hour, block_policy_id="p1"),
    }
    for name, state in cases.items():
        ledger = FallbackLedger()
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for i in range(n):
                j = i % 1_000
                gate(state, cats[j], convs[j], START_MS + i, ledger)
            best = min(best, time.perf_counter() - t0)
        print(f"gate [{name}]: {n / best:,.0f} calls/s ({best / n * 1e9:.0f} ns/call)")


def calibrate(n: int = 100_000, rounds: int = 10) -> None:
    """The cost of the benchmark loop around an empty function (machine speed and load)."""

    def empty(*args: object, **kwargs: object) -> tuple[None, None]:
        return None, None

    evs = events(1_000)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(n):
            empty(None, evs[i % 1_000], None, None, START_MS + i, partition=0, offset=i)
        best = min(best, time.perf_counter() - t0)
    print(f"calibration: an empty call in the same loop costs {best / n * 1e6:.2f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--calls", type=int, default=200_000, help="gate() calls per round")
    ap.add_argument("--profile", action="store_true", help="cProfile the evaluate loop")
    args = ap.parse_args()
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else nullcontext() as f:
        if f is not None:
            print(f"load average: {' '.join(f.read().split()[:3])}")
    calibrate()
    bench_evaluate(args.events, args.profile)
    bench_gate(args.calls)


if __name__ == "__main__":
    main()
