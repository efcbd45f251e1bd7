"""The simulation engine: the same decisions as the core walked by hand, chunked reading,
gated calls, cap periods in local time, and clear refusals of bad drafts and ranges."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from capstream.core import AccountState, Effects, PolicySet, UsageEvent, evaluate, expire
from capstream.simulation import (
    EventSource,
    SimulationError,
    check_draft,
    check_range,
    configs,
    parse_body,
    simulate,
)
from capstream.simulation.commands import simulate_command
from capstream.simulation.memory import MemoryEvents
from capstream.simulation.source import Events
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings

TZ = "Asia/Karachi"  # UTC+5, no DST
ACCT = "acme"
MIN = 60_000
DAY = 86_400_000


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)  # type: ignore[misc]


T0 = ms(2026, 11, 2, 9, 0)


def history(days: int = 3) -> list[UsageEvent]:
    """Each day 09:00-14:00 local: three bots, text mostly, a burst at 11:00 on bot-1."""
    out: list[UsageEvent] = []
    i = 0
    for d in range(days):
        t = T0 + d * DAY
        end = t + 5 * 60 * MIN
        while t < end:
            burst = 8 if (t - T0) % DAY == 2 * 60 * MIN else 1
            for b in range(burst):
                bot, cat = f"bot-{i % 3 if burst == 1 else 1}", "vision" if i % 5 == 0 else "text"
                ev = UsageEvent(f"e{i:06d}", ACCT, bot, f"c{i % 7}", cat, "m", 200 + i % 50, 80,
                                1, i % 11 == 0, 20_000 + 1_000 * (i % 4), t + b)  # fmt: skip
                out.append(ev)
                i += 1
            t += 3 * MIN
    return out


TENANT = TenantSettingsRecord(
    account_id=ACCT, plan="pro", timezone=TZ, owner_email="owner@acme.test",
    caps={"vision": {"daily_micro": 150_000}}, throttle="smart",
)  # fmt: skip
CURRENT = [
    PolicyRecord(policy_id="hourly", account_id=ACCT, metric="messages", threshold=20,
                 window_seconds=3600, scope="account_total", alert={"recipients": []}),
]  # fmt: skip
DRAFT_POLICY = {
    "policy_id": "burst", "metric": "tokens", "threshold": 1500, "window_seconds": 600,
    "scope": "account_each_bot", "block": {"duration_seconds": 900},
    "alert": {"recipients": ["ops@acme.test"]},
}  # fmt: skip
FROM, TO = T0 - DAY, T0 + 4 * DAY
NOW = T0 + 10 * DAY


def run(
    events: list[UsageEvent], body: dict[str, Any], *, gated: str = "drop", chunk: int = 20_000,
    policies: list[PolicyRecord] = CURRENT, tenant: TenantSettingsRecord = TENANT,
    hooks: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], MemoryEvents]:  # fmt: skip
    query = MemoryEvents(events)
    draft = check_draft(ACCT, parse_body(body), policies, tenant, NOW)
    current, drafted = configs(policies, tenant, draft)
    source = EventSource(query, ACCT, FROM, TO, chunk_rows=chunk)
    result = simulate(source, current, drafted, draft, gated=gated, on_effects=hooks)  # type: ignore[arg-type]
    return result, query


def by_hand(events: list[UsageEvent], policies: PolicySet, tenant: Any) -> list[Effects]:
    """The worker's event-time rule walked with the core's entry points directly."""
    state = AccountState(ACCT)
    out: list[Effects] = []
    now = 0
    for e in events:
        if e.occurred_at_ms > now:
            now = e.occurred_at_ms
            if state.view is not None and state.deadline_ms <= now:
                fx = expire(state, now)[1]
                if fx:
                    out.append(fx)
        fx = evaluate(state, e, policies, tenant, now)[1]
        if fx:
            out.append(fx)
    return out


def _key(fx: list[Effects]) -> list[Any]:
    return [
        ([(s.bot_id, s.version, s.updated_at_ms, s.blocked_until_ms, s.block_policy_id,
           sorted(s.caps), s.downgraded_until_ms, s.batching_interval_s) for s in f.enforcement],
         [n.notification_id for n in f.notifications])
        for f in fx
    ]  # fmt: skip


def test_keep_mode_decides_exactly_what_the_core_decides_walking_the_events() -> None:
    events = history()
    seen: dict[str, list[Effects]] = {"current": [], "draft": []}
    hooks = {k: v.append for k, v in seen.items()}
    result, _ = run(events, {"policy": DRAFT_POLICY}, gated="keep", hooks=hooks)
    draft = check_draft(ACCT, parse_body({"policy": DRAFT_POLICY}), CURRENT, TENANT, NOW)
    current, drafted = configs(CURRENT, TENANT, draft)
    assert _key(seen["current"]) == _key(by_hand(events, current.policies, current.settings))
    assert _key(seen["draft"]) == _key(by_hand(events, drafted.policies, drafted.settings))
    sim = result["simulated"]
    assert sim["blocks"] and not result["current"]["blocks"]
    assert {a["policy_id"] for a in sim["alerts"]} == {"hourly", "burst"}
    burst = [a for a in sim["alerts"] if a["policy_id"] == "burst"]
    assert all(a["recipients"] == ["ops@acme.test"] for a in burst)
    assert all(b["policy_id"] == "burst" and b["until_ms"] - b["from_ms"] == 900_000
               for b in sim["blocks"])  # fmt: skip
    # keep mode counts every recorded event on both sides
    assert sim["usage"]["events"] == result["current"]["usage"]["events"] == len(events)


def test_drop_mode_does_not_count_calls_the_draft_would_have_refused() -> None:
    events = history()
    result, _ = run(events, {"policy": DRAFT_POLICY})
    cur, sim = result["current"], result["simulated"]
    assert sim["gated"]["paused"] > 0
    assert sim["usage"]["events"] == len(events) - sim["gated"]["total"]
    assert cur["usage"]["events"] == len(events) - cur["gated"]["total"]
    assert sim["usage"]["tokens"] < cur["usage"]["tokens"]


def test_small_chunks_and_a_hot_hour_read_in_pieces_give_the_same_result() -> None:
    events = history()
    whole, q1 = run(events, {"policy": DRAFT_POLICY})
    pieces, q7 = run(events, {"policy": DRAFT_POLICY}, chunk=7)
    assert whole == pieces
    assert len(q7.calls) > len(q1.calls) + 10
    assert any("(occurred_at, event_id) >" in sql for sql, _ in q7.calls)  # keyset pages
    # every statement is parameterised and filtered by the account
    assert all(p["account"] == ACCT and "{account:String}" in sql for sql, p in q7.calls)


def test_the_column_port_with_or_without_prefetch_gives_the_row_ports_result() -> None:
    events = history()
    rows, _ = run(events, {"policy": DRAFT_POLICY}, chunk=7)
    for prefetch in (True, False):
        query = MemoryEvents(events)
        draft = check_draft(ACCT, parse_body({"policy": DRAFT_POLICY}), CURRENT, TENANT, NOW)
        current, drafted = configs(CURRENT, TENANT, draft)
        source = EventSource(
            query, ACCT, FROM, TO, chunk_rows=7, columns=query.columns, prefetch=prefetch
        )
        assert simulate(source, current, drafted, draft) == rows
        # the chunks came through the column port: every event statement, keyset pages too
        assert any("(occurred_at, event_id) >" in sql for sql, _ in query.calls)


def test_reading_ahead_hands_a_store_failure_to_the_caller_and_stops_when_it_stops() -> None:
    events = history()
    query = MemoryEvents(events)
    failing = {"after": 3}

    def flaky(sql: str, params: dict[str, Any]) -> tuple[list[str], list[Any]]:
        failing["after"] -= 1
        if failing["after"] < 0:
            raise RuntimeError("store went away")
        return query.columns(sql, params)

    source = EventSource(query, ACCT, FROM, TO, chunk_rows=7, columns=flaky)
    got: list[Events] = []
    with pytest.raises(RuntimeError, match="store went away"):
        got.extend(source.chunks())
    assert len(got) == 3
    # a caller that stops after one chunk ends the reading thread (no statement after it)
    query = MemoryEvents(events)
    source = EventSource(query, ACCT, FROM, TO, chunk_rows=7, columns=query.columns)
    chunks = source.chunks()
    first = next(chunks)
    chunks.close()
    calls = len(query.calls)
    assert first and calls <= 4  # the count, this chunk, at most two read ahead
    assert not [t for t in threading.enumerate() if t.name == "simulation-read"]


def test_a_cap_draft_reports_cap_periods_in_local_time_and_fallback_or_skip_decisions() -> None:
    events = history(2)
    body = {
        "settings": {
            "timezone": TZ,
            "caps": {"text": {"daily_micro": 400_000}, "vision": {"daily_micro": None}},
        }
    }
    result, _ = run(events, body)
    sim = result["simulated"]
    text = [c for c in sim["caps"] if c["category"] == "text"]
    assert [c["period_key"] for c in text] == ["2026-11-02", "2026-11-03"]
    for c in text:
        assert c["period"] == "daily" and c["until"].endswith("T00:00:00+05:00")
        assert c["from"].startswith(c["period_key"])
    assert sim["cap_notifications"] >= 2
    # each capped day: the first text call of each (bot, conversation) gets the fallback text,
    # further text calls are skipped silently (the crossing call itself was allowed)
    text_after: dict[str, set[str]] = {}
    skips = 0
    for e in events:
        for c in text:
            if e.category == "text" and c["from_ms"] < e.occurred_at_ms < c["until_ms"]:
                seen = text_after.setdefault(c["period_key"], set())
                conv = (e.bot_id, e.conversation_id)
                skips += conv in seen
                seen.add(conv)
    assert sim["gated"]["fallback"] == sum(len(s) for s in text_after.values())
    assert sim["gated"]["skip"] == skips  # the draft removes the vision cap (PATCH: null)
    assert not [c for c in result["current"]["caps"] if c["category"] == "text"]
    chart = next(c for c in sim["charts"] if c["label"] == "text credits today")
    assert chart["threshold"] == 400_000 and max(p[1] for p in chart["points"]) >= 400_000


def test_a_forecast_lead_draft_shows_when_each_day_the_forecast_would_have_gone_out() -> None:
    events = history(2)  # ~1.85 text credits a day, between 09:00 and 14:00 local
    caps = {"text": {"daily_micro": 4_000_000, "daily_forecast_lead_s": 86_400}}
    result, _ = run(events, {"settings": {"caps": caps}})
    sim = result["simulated"]
    assert result["current"]["forecasts"] == []
    # the cap is never reached, but at the morning's pace it would be before midnight:
    # one forecast a local day, to the owner, in the morning
    assert [f["at"][:10] for f in sim["forecasts"]] == ["2026-11-02", "2026-11-03"]
    for f in sim["forecasts"]:
        assert (f["category"], f["period"], f["recipients"]) == (
            "text",
            "daily",
            ["owner@acme.test"],
        )
        assert "T09:" in f["at"] or "T10:" in f["at"]
    assert not [c for c in sim["caps"] if c["category"] == "text"]
    assert len({f["notification_id"] for f in sim["forecasts"]}) == 2


def test_replacing_a_policy_runs_the_draft_in_its_place() -> None:
    body = {"policy": {**DRAFT_POLICY, "metric": "messages", "threshold": 10_000,
                       "window_seconds": 3600, "scope": "account_total"},
            "replaces": "hourly"}  # fmt: skip
    result, _ = run(history(), body)
    assert result["current"]["alerts"] and not result["simulated"]["alerts"]
    assert result["draft"] == {"kind": "policy", "policy_id": "hourly", "replaces": "hourly"}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({}, "policy", "needs a draft"),
        ({"policy": DRAFT_POLICY, "settings": {}}, "settings", "exactly one"),
        ({"policy": {**DRAFT_POLICY, "alert": None, "block": None}}, "policy.alert", "no action"),
        ({"policy": DRAFT_POLICY, "replaces": "nope"}, "replaces", "no policy 'nope'"),
        ({"policy": {**DRAFT_POLICY, "policy_id": "hourly"}}, "policy.policy_id", "replaces"),
        ({"policy": {**DRAFT_POLICY, "threshold": -1}}, "policy.threshold", "greater than 0"),
        ({"settings": {"auto_downgrade": True}, "replaces": "x"}, "replaces", "goes with"),
        ({"settings": {"plan": "enterprise"}}, "settings.plan", "keeps the plan"),
        ({"settings": {"timezone": "Mars/Base"}}, "settings.timezone", "Mars/Base"),
        ({"settings": {"language": "xx"}}, "settings.language", "'en'"),
        ({"policy": DRAFT_POLICY, "colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_bad_drafts_are_refused_naming_the_field(body: Any, field: str, words: str) -> None:
    with pytest.raises(SimulationError) as info:
        check_draft(ACCT, parse_body(body), CURRENT, TENANT, NOW)
    assert info.value.field == field
    assert words in str(info.value)


def test_ranges_default_to_30_days_and_stop_at_93() -> None:
    assert check_range(None, None, NOW) == (NOW - 30 * DAY, NOW)
    assert check_range(None, NOW + DAY, NOW) == (NOW - 30 * DAY, NOW)  # no future
    assert check_range(NOW - 93 * DAY, None, NOW) == (NOW - 93 * DAY, NOW)
    with pytest.raises(SimulationError, match="at most 93 days"):
        check_range(NOW - 94 * DAY, None, NOW)
    with pytest.raises(SimulationError, match="'from' must be before 'to'"):
        check_range(NOW - DAY, NOW - 2 * DAY, NOW)


class _View:
    def policies(self, account_id: str) -> list[PolicyRecord]:
        return CURRENT if account_id == ACCT else []

    def tenant(self, account_id: str) -> TenantSettingsRecord | None:
        return TENANT if account_id == ACCT else None


def _cli(tmp_path: Path, *, policy: Any = DRAFT_POLICY, account: str = ACCT, **kw: Any) -> str:
    f = tmp_path / "draft.json"
    f.write_text(policy if isinstance(policy, str) else __import__("json").dumps(policy))
    console = Console(record=True, width=120)
    args: dict[str, Any] = {"from_": str(FROM), "to": str(TO), **kw}
    simulate_command(
        Settings(data_dir=tmp_path / "d"), account, f, None, None, args["from_"], args["to"],
        "table", console, view=_View(), query=MemoryEvents(history()),
        known=lambda a: a == ACCT,
    )  # fmt: skip
    return console.export_text()


def test_the_cli_prints_the_side_by_side_table(tmp_path: Path) -> None:
    text = _cli(tmp_path)
    assert "with the draft" in text and "paused calls" in text and "cap forecasts" in text
    assert "block 2026-11-02T11:0" in text  # the 11:00 burst, local time


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"account": "ghost"}, "unknown account 'ghost'"),
        ({"from_": "2026-01-01", "to": "2026-06-01"}, "at most 93 days"),
        ({"policy": "{not json"}, "is not valid JSON"),
        ({"policy": [1, 2]}, "must hold one JSON object"),
        ({"policy": {**DRAFT_POLICY, "alert": None, "block": None}}, "no action"),
        ({"from_": "last tuesday"}, "is not a date or time"),
    ],
)
def test_the_cli_refuses_bad_input_clearly(tmp_path: Path, kw: Any, words: str) -> None:
    with pytest.raises(SimulationError, match=words):
        _cli(tmp_path, **kw)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--policy", "missing.json"], "cannot read missing.json"),
        (["--policy", "p.json", "--settings", "p.json"], "exactly one draft"),
        (["--policy", "p.json", "--from", "2026-01-01", "--to", "2026-06-01"], "at most 93 days"),
        (["--policy", "p.json", "--format", "xml"], "--format must be table or json"),
    ],
)
def test_capstream_simulate_exits_1_with_one_clear_line(
    tmp_path: Path, args: list[str], words: str
) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "p.json").write_text(__import__("json").dumps(DRAFT_POLICY))
    env = {**os.environ, "CAPSTREAM_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "capstream.cli", "simulate", ACCT, *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert words in proc.stderr and proc.stderr.startswith("error:")
    assert "Traceback" not in proc.stderr


def test_a_calendar_policy_chart_follows_its_day_total_and_resets_at_local_midnight() -> None:
    """The chart of a daily policy shows the day's tokens of the busiest bot, back to
    nothing at each local midnight (it used to look up a rolling window and show 0)."""
    events = history()
    daily = {"policy_id": "daily-tokens", "metric": "tokens", "threshold": 10_000,
             "period": "day", "scope": "account_each_bot", "alert": {"recipients": []}}  # fmt: skip
    result, _ = run(events, {"policy": daily}, gated="keep")
    (chart,) = result["simulated"]["charts"]
    assert chart["label"] == "tokens this day (account_each_bot)"
    assert chart["threshold"] == 10_000
    points = chart["points"]
    assert len(points) > 20
    for t, value in points:  # each point: the busiest bot's tokens so far that local day
        start = T0 - 9 * 60 * MIN + (t - T0 + 9 * 60 * MIN) // DAY * DAY
        today = [e for e in events if start <= e.occurred_at_ms <= t]
        per_bot: dict[str, int] = {}
        for e in today:
            per_bot[e.bot_id] = per_bot.get(e.bot_id, 0) + e.tokens_in + e.tokens_out
        assert value == max(per_bot.values(), default=0), t
    assert max(value for _, value in points) > 10_000
    firsts = [value for t, value in points if (t - T0) % DAY < 3 * MIN]
    assert firsts and max(firsts) < 3_000  # a new day starts from its first calls
    assert any(a["policy_id"] == "daily-tokens" for a in result["simulated"]["alerts"])
