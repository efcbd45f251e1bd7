"""The simulation decides what the running worker decided (issue 15's acceptance test).

One recorded history goes through both real paths: the usage topic -> ``capstream worker``
in event-time mode (enforcement states on the control topic, notifications on theirs), and
the usage topic -> ``capstream sink`` -> chDB -> the simulation, which reads the events back
through the API's read-only query port (the sink's SQL endpoint, as the API does beside a
running sink). The worker runs the current policies plus the draft; the simulation's draft
side (``gated="keep"``: every recorded event applied, as the worker did) must publish the
same states and notifications, decision by decision, and fold into the same alerts, blocks
and cap periods.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sink_helpers import caught_up, sink_running
from sink_helpers import wait_for as wait_until
from test_worker_harness import Config, TopicLog, WorkerProcess, account_on, wait_for

from capstream.api.clickhouse import clickhouse_query
from capstream.core import Effects, UsageEvent
from capstream.gateway import UsageRecorder
from capstream.simulation import EventSource, check_draft, configs, parse_body, simulate
from capstream.simulation.timeline import Timeline
from capstream.streams.control_wire import decode_state, encode_state
from capstream.streams.records import NotificationRecord, PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics

PARTITIONS = 4
TZ = "Europe/Berlin"


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=Path(tmp_path_factory.mktemp("sim-worker")),
        usage_partitions=PARTITIONS,
        control_partitions=4,
    )
    create_topics(settings)
    return settings


@pytest.fixture(scope="module")
def worker(deployment: Settings) -> Iterator[WorkerProcess]:
    w = WorkerProcess(deployment, event_time=True)
    yield w
    assert w.stop() == 0, w.log()


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)  # type: ignore[misc]


def _history(acct: str) -> list[UsageEvent]:
    """20:00 on 24 Oct 2026 to 06:00 on the 25th (local midnight, then 03:00 -> 02:00 DST):
    steady text and vision traffic of three bots with a burst now and then."""
    start, end = ms(2026, 10, 24, 20, 0), ms(2026, 10, 25, 6, 0)
    events, t, i = [], start, 0
    while t < end:
        burst = 7 if i % 13 == 0 else 1
        for b in range(burst):
            cat = "text" if i % 4 else "vision"
            ev = UsageEvent(f"e{i:05d}-{b}", acct, f"bot-{i % 3}", f"c{i % 5}", cat, "m",
                            250 + 40 * (i % 7), 90, 1, i % 9 == 0, 1_100 + 150 * (i % 5),
                            t + b)  # fmt: skip
            events.append(ev)
        t += 3 * 60_000 + (i % 4) * 11_000
        i += 1
    return events


def _states(records: list[tuple[bytes | None, bytes | None]], acct: str) -> list[Any]:
    """The account's states in order; a state its key's tombstone follows is the bot going
    back to following the account (``follows_account``, not on the wire)."""
    out: list[Any] = []
    last: dict[bytes | None, Any] = {}
    for key, value in records:
        if value is None:
            if key in last:
                last[key].follows_account = True
            continue
        s = decode_state(value)
        if s.account_id == acct:
            out.append(s)
            last[key] = s
    return out


def test_the_simulation_publishes_what_the_running_worker_published(
    deployment: Settings, worker: WorkerProcess
) -> None:
    acct = account_on(2, PARTITIONS, f"sim-{uuid.uuid4().hex[:6]}")
    tenant = TenantSettingsRecord(
        account_id=acct, plan="pro", timezone=TZ, owner_email="owner@sim.test",
        auto_downgrade=True, throttle="smart",
        caps={"text": {"daily_micro": 50_000, "monthly_micro": 10_000_000,
                       "daily_forecast_lead_s": 3600},
              "vision": {"daily_micro": 8_000}},
    )  # fmt: skip
    current = [
        PolicyRecord(policy_id="total", account_id=acct, metric="messages", threshold=35,
                     window_seconds=7200, scope="account_total", alert={"recipients": []}),
    ]  # fmt: skip
    draft_body = {
        "policy": {"policy_id": "hourly", "metric": "tokens", "threshold": 2_500,
                   "window_seconds": 3600, "scope": "account_each_bot",
                   "block": {"duration_seconds": 1200},
                   "alert": {"recipients": ["ops@sim.test"]}},
    }  # fmt: skip
    now = ms(2026, 11, 1, 0, 0)
    draft = check_draft(acct, parse_body(draft_body), current, tenant, now)
    assert draft.policy is not None
    cur_config, draft_config = configs(current, tenant, draft)

    # The worker runs the current policies plus the draft.
    config = Config(deployment, worker)
    config.settings(acct, **tenant.model_dump(exclude={"account_id"}))
    for p in [*current, draft_body["policy"]]:
        rec = p if isinstance(p, PolicyRecord) else PolicyRecord(account_id=acct, **p)
        config.policy(acct, rec.policy_id, **rec.model_dump(exclude={"account_id", "policy_id"}))
    events = _history(acct)
    topics = Topics(deployment.topic_prefix)
    log = TopicLog(deployment, topics.control, topics.notifications)
    try:
        with UsageRecorder(deployment, linger_ms=1) as rec:
            for e in events:
                assert rec.record(e)
                assert rec.flush(10) == 0  # one event per record: the stream's order is time

        group = f"sink-{uuid.uuid4().hex[:8]}"
        with sink_running(deployment, group_id=group):
            wait_until(lambda: caught_up(deployment, group, topics.usage), 90, "the sink")
            seen: list[Effects] = []
            query = clickhouse_query(deployment)
            source = EventSource(query, acct, ms(2026, 10, 24, 0, 0), now, chunk_rows=40)
            try:
                result = simulate(
                    source, cur_config, draft_config, draft, gated="keep",
                    on_effects={"draft": seen.append},
                )  # fmt: skip
            finally:
                query.close()
        assert result["events"] == len(events)
        assert source.queries > 5  # read in chunks, not at once

        want_states = [s for fx in seen for s in fx.enforcement]
        want_notes = [n.notification_id for fx in seen for n in fx.notifications]
        sim = result["simulated"]
        assert sim["blocks"] and sim["alerts"] and sim["caps"] and sim["downgrades"]
        assert sim["forecasts"]  # the text cap in reach within the hour, once a local day
        assert {a["policy_id"] for a in sim["alerts"]} == {"total", "hourly"}
        assert len(result["current"]["blocks"]) == 0  # the current policy only alerts

        def published() -> tuple[list[Any], list[NotificationRecord]] | None:
            states = _states(log.of(topics.control), acct)
            notes = [NotificationRecord.from_bytes(v) for _, v in log.of(topics.notifications)
                     if v is not None]  # fmt: skip
            notes = [n for n in notes if n.account_id == acct]
            done = len(states) >= len(want_states) and len(notes) >= len(want_notes)
            return (states, notes) if done else None

        states, notes = wait_for(published, 60, "the worker's decisions")
        # decision by decision: each bot's states in order, byte for byte; the same alerts
        for bot in sorted({s.bot_id for s in want_states}):
            assert [encode_state(s) for s in states if s.bot_id == bot] == [
                encode_state(s) for s in want_states if s.bot_id == bot
            ], bot
        assert sorted(n.notification_id for n in notes) == sorted(want_notes)

        # the worker's topics folded the same way give the simulation's lists
        fold = Timeline(TZ)
        for s in states:
            fold.state(s)
        for n in sorted(notes, key=lambda n: (n.created_at_ms, n.notification_id)):
            fold.note(n, n.recipients)
        worker_view = fold.finish(now)
        for key in (
            "alerts",
            "blocks",
            "caps",
            "downgrades",
            "throttles",
            "cap_notifications",
            "forecasts",
        ):
            got = worker_view[key]
            if key == "alerts":
                got = sorted(got, key=lambda a: (a["at_ms"], a["notification_id"]))
                exp = sorted(sim[key], key=lambda a: (a["at_ms"], a["notification_id"]))
            else:
                exp = sim[key]
            assert got == exp, key
    finally:
        log.close()
