"""The dashboard's ClickHouse reads on embedded chDB with the sink's schema (no broker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from capstream.api.accounts import AccountStore
from capstream.api.app import create_app
from capstream.api.dashboard.mailbox import Mailbox, mailbox_dir
from capstream.api.keys import AdminKey, hash_secret
from capstream.core.periods import day_period
from capstream.streams.settings import Settings

NOW = 1_780_000_000_000  # 2026-05-28 20:26:40 UTC
MIN, HOUR = 60_000, 3_600_000
USAGE_COLS = ["batch_id", "producer", "sent_at_ms", "events"]
DECISION_COLS = [
    "account_id", "bot_id", "version", "updated_at_ms", "blocked_until_ms", "block_policy_id",
    "model", "downgraded_until_ms", "batching_interval_s", "throttled_until_ms",
    "throttle_reason", "caps", "plan", "fallback_text_daily", "fallback_text_monthly",
]  # fmt: skip


@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[Any]:
    """A chDB store with the sink's schema; closed after the test (one chDB per process)."""
    from capstream.sinks.migrations import migrate
    from capstream.sinks.store import open_client

    client = open_client(Settings(data_dir=tmp_path / "ch"))
    migrate(client)
    yield client
    client.close()


@pytest.fixture
def api(tmp_path: Path, chdb: Any, memlog: Any, admin: dict[str, str]) -> Iterator[TestClient]:
    """The app on the conftest's in-memory topics, with chDB as its ClickHouse."""

    def query(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        res = chdb.query(sql, parameters=params)
        return [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]

    store = AccountStore(tmp_path / "accounts.sqlite3")
    key = admin["Authorization"].removeprefix("Bearer ")
    app = create_app(
        Settings(topic_prefix="unit", data_dir=tmp_path / "data"), store=store, view=memlog,
        publisher=memlog, query=query, admin=AdminKey(hash_secret(key)), clock=lambda: NOW,
    )  # fmt: skip
    with TestClient(app) as c:
        c.headers.update({"X-Admin": key})  # for Accounts() below
        yield c
    store.close()


def Accounts(api: TestClient) -> Any:  # noqa: N802 - reads like the conftest helper
    """Create an account (and bots) with the admin key; returns the account key's headers."""

    def create(account_id: str, plan: str = "free", bots: tuple[str, ...] = ()) -> dict[str, str]:
        admin = {"Authorization": f"Bearer {api.headers['X-Admin']}"}
        body = {"account_id": account_id, "owner_email": f"owner@{account_id}.test", "plan": plan}
        r = api.post("/v1/accounts", json=body, headers=admin)
        assert r.status_code == 201, r.text
        headers = {"Authorization": f"Bearer {r.json()['api_key']}"}
        for bot in bots:
            assert api.put(f"/v1/accounts/{account_id}/bots/{bot}", json={}, headers=headers)
        return headers

    return create


def usage(chdb: Any, *events: tuple[str, str, str, str, int, int, int, int]) -> None:
    """(account, bot, conversation, category, tokens, messages, credits, ms before NOW)."""
    rows = [
        [
            f"b{i}",
            "test",
            NOW,
            [(f"e{i}", a, b, c, cat, "m", tok, 0, msgs, True, cr, NOW - ago, {})],
        ]
        for i, (a, b, c, cat, tok, msgs, cr, ago) in enumerate(events)
    ]
    chdb.insert("usage_batches_inbox", rows, column_names=USAGE_COLS)


def test_live_view_per_bot_and_category_policies_caps_and_states(
    api: TestClient, chdb: Any
) -> None:
    h = Accounts(api)("acme", plan="free", bots=("bot-1", "bot-2"))
    body = {"caps": {"text": {"daily_micro": 50_000, "monthly_micro": 1_000_000}}}
    assert api.patch("/v1/accounts/acme/settings", json=body, headers=h).is_success
    policy = {"name": "hourly", "metric": "tokens", "threshold": 1_000, "window_seconds": 3600,
              "scope": "account_each_bot", "block": {"duration_seconds": 600}}  # fmt: skip
    assert api.post(
        "/v1/accounts/acme/policies", json={**policy, "policy_id": "hourly"}, headers=h
    ).is_success
    usage(
        chdb,
        ("acme", "bot-1", "c1", "text", 600, 2, 30_000, 10 * MIN),
        ("acme", "bot-1", "c1", "text", 500, 1, 25_000, 5 * MIN),
        ("acme", "bot-2", "c2", "vision", 300, 1, 10_000, 2 * HOUR),
        ("acme", "bot-1", "c0", "text", 900, 1, 5_000, 24 * HOUR),  # yesterday: month only
        ("globex", "bot-1", "c9", "text", 99_000, 9, 9_000_000, MIN),  # another tenant
    )
    chdb.insert("decisions_inbox", [
        ["acme", "bot-1", 1, NOW - 9 * MIN, None, None, "sonnet", None, 3, None, None, {}, "free",
         "", ""],
        ["acme", "bot-1", 2, NOW - MIN, NOW + 9 * MIN, "hourly", "sonnet", None, 60, NOW + HOUR,
         "loop_suspected", {"text": ("daily", "2026-05-28", NOW + 3 * HOUR)}, "free", "", ""],
    ], column_names=DECISION_COLS)  # fmt: skip

    r = api.get("/v1/accounts/acme/live", headers=h)
    assert r.status_code == 200, r.text
    live = r.json()
    bots = {b["bot_id"]: b for b in live["bots"]}
    assert set(bots) == {"bot-1", "bot-2"}
    text = bots["bot-1"]["usage"]["text"]
    assert (text["day_credits_micro"], text["month_credits_micro"]) == (55_000, 60_000)
    assert (text["day_tokens"], text["day_messages"], text["hour_credits_micro"]) == (
        1_100,
        3,
        55_000,
    )
    assert bots["bot-2"]["usage"]["vision"]["hour_credits_micro"] == 0
    state = bots["bot-1"]["state"]
    assert (state["version"], state["blocked_until_ms"], state["block_policy_id"]) == (
        2, NOW + 9 * MIN, "hourly",
    )  # fmt: skip
    assert (state["batching_interval_s"], state["throttle_reason"]) == (60, "loop_suspected")
    assert state["caps"] == [{"category": "text", "period": "daily", "period_key": "2026-05-28",
                              "resumes_at_ms": NOW + 3 * HOUR}]  # fmt: skip
    assert bots["bot-2"]["state"] is None

    (p,) = live["policies"]
    assert p["per_bot"] == {"bot-1": 1_100} and p["used"] == 1_100  # bot-2's is 2 h old
    assert p["breached"] is True and p["percent"] == 110.0

    caps = {(c["projection"]["category"], c["projection"]["period"]): c for c in live["caps"]}
    daily = caps[("text", "daily")]
    assert daily["projection"]["cap_reached"] is True
    assert daily["cta"] == "Upgrade to Starter →"  # free plan
    monthly = caps[("text", "monthly")]["projection"]
    assert monthly["used_micro"] == 60_000 and caps[("text", "monthly")]["cta"] is None
    day = day_period(NOW, "UTC")
    # today's pace: 55k credits since the first use 10 minutes ago
    expected = 55_000 + round(55_000 / (10 * MIN) * (day.end_ms - NOW))
    assert daily["projection"]["projected_micro"] == expected
    vision = [p for p in live["projections"] if p["category"] == "vision"]
    assert {p["period"] for p in vision} == {"daily", "monthly"}  # no cap, but usage to show


def test_usage_series_fills_every_bucket(api: TestClient, chdb: Any) -> None:
    h = Accounts(api)("acme", bots=("bot-1",))
    usage(
        chdb,
        ("acme", "bot-1", "c1", "text", 100, 1, 1_000, 0),
        ("acme", "bot-1", "c1", "text", 200, 1, 2_000, 30_000),  # NOW is 40 s into its minute
        ("acme", "bot-2", "c2", "text", 50, 1, 500, 30 * MIN),
        ("acme", "bot-1", "c1", "text", 999, 1, 9_000, 2 * HOUR),  # outside the last hour
        ("globex", "bot-1", "c9", "text", 7, 1, 7, 0),
    )
    s = api.get("/v1/accounts/acme/usage/series", params={"metric": "tokens"}, headers=h).json()
    assert (s["buckets"], s["step_ms"], len(s["series"])) == (60, MIN, 2)
    assert s["start_ms"] == (NOW // MIN - 59) * MIN
    by_bot = {x["bot_id"]: x["values"] for x in s["series"]}
    assert len(by_bot["bot-1"]) == 60 and sum(by_bot["bot-1"]) == 300
    assert by_bot["bot-1"][59] == 300
    assert by_bot["bot-2"][59 - 30] == 50
    quarter = api.get("/v1/accounts/acme/usage/series",
                      params={"range": "15m", "metric": "tokens"}, headers=h).json()  # fmt: skip
    assert (quarter["step_ms"], quarter["buckets"]) == (15_000, 60)
    (only,) = quarter["series"]  # bot-2's usage is 30 minutes old
    assert (only["bot_id"], only["values"][59], only["values"][57], only["total"]) == (
        "bot-1", 100, 200, 300,
    )  # fmt: skip
    day = api.get("/v1/accounts/acme/usage/series", params={"range": "day"}, headers=h).json()
    totals = {x["bot_id"]: x["total"] for x in day["series"]}
    assert totals == {"bot-1": 12_000, "bot-2": 500}  # credits from the hourly rollup
    month = api.get("/v1/accounts/acme/usage/series",
                    params={"range": "month", "metric": "messages"}, headers=h).json()  # fmt: skip
    assert {x["bot_id"]: x["total"] for x in month["series"]} == {"bot-1": 3, "bot-2": 1}
    bad = api.get("/v1/accounts/acme/usage/series", params={"range": "year"}, headers=h)
    assert bad.status_code == 422


def test_mailbox_shows_only_the_accounts_own_mail(
    api: TestClient, chdb: Any, tmp_path: Path
) -> None:
    h = Accounts(api)("acme")
    assert api.get("/v1/accounts/acme/mailbox", headers=h).json() == {
        "enabled": False, "messages": []
    }  # fmt: skip
    box = Mailbox(mailbox_dir(tmp_path / "data"))
    for nid, subject in (("n-acme", "Policy alert"), ("n-globex", "Not yours")):
        raw = (f"From: capstream@localhost\r\nTo: owner@acme.test\r\nSubject: {subject}\r\n"
               f"X-Capstream-Notification-Id: {nid}\r\nX-Capstream-Kind: policy_alert\r\n\r\n"
               "Your bot crossed its threshold.\r\n").encode()  # fmt: skip
        box.store(raw, "capstream@localhost", ["owner@acme.test"])
    chdb.insert(
        "notifications_inbox",
        [["n-acme", "acme", "policy_alert", None, [], "Policy alert", "b", NOW, None],
         ["n-globex", "globex", "policy_alert", None, [], "Not yours", "b", NOW, None]],
        column_names=["notification_id", "account_id", "kind", "policy_id", "recipients",
                      "subject", "body", "created_at_ms", "window_start_ms"],
    )  # fmt: skip
    out = api.get("/v1/accounts/acme/mailbox", headers=h).json()
    assert out["enabled"] is True
    (mail,) = out["messages"]
    assert (mail["subject"], mail["kind"], mail["rcpt_to"]) == (
        "Policy alert", "policy_alert", ["owner@acme.test"],
    )  # fmt: skip
    assert mail["body"].strip() == "Your bot crossed its threshold."


FEED_COLS = ["account_id", "bot_id", "conversation_id", "local_day", "category", "period",
             "attempts", "message", "cta"]  # fmt: skip


def test_a_conversation_capped_in_two_categories_keeps_both_feed_rows(
    api: TestClient, chdb: Any
) -> None:
    """Issue 18 item 1: text (3 attempts) and vision (1) of one conversation and day are two
    rows in GET /feed, and stay two after ClickHouse merges the table."""
    h = Accounts(api)("acme", bots=("bot-1",))
    day = day_period(NOW, "UTC").key
    rows = [
        ["acme", "bot-1", "conv-1", day, "text", "daily", n, "text capped", None] for n in (1, 2, 3)
    ] + [["acme", "bot-1", "conv-1", day, "vision", "daily", 1, "vision capped", None]]
    for i, row in enumerate(rows):  # one insert per feed update, as the sink writes them
        chdb.insert("feed_rows_inbox", [row], column_names=FEED_COLS,
                    settings={"insert_deduplication_token": f"feed:{i}"})  # fmt: skip

    def feed() -> list[tuple[str, int]]:
        r = api.get("/v1/accounts/acme/feed", params={"day": day}, headers=h)
        assert r.status_code == 200, r.text
        return [(row["category"], row["attempts"]) for row in r.json()]

    assert feed() == [("text", 3), ("vision", 1)]
    chdb.command("OPTIMIZE TABLE feed_rows FINAL")
    assert feed() == [("text", 3), ("vision", 1)]
    assert chdb.query("SELECT count() FROM feed_rows").result_rows[0][0] == 2


def test_a_resume_is_recorded_in_decisions_with_who_and_when_and_is_not_a_state(
    api: TestClient, chdb: Any
) -> None:
    """Issue 18 item 5: the sink's rows of a resume (migration 5) in GET /decisions; the
    live view still shows the bot's latest state."""
    h = Accounts(api)("acme", bots=("bot-1",))
    chdb.insert("decisions_inbox", [
        ["acme", "bot-1", 1, NOW - 9 * MIN, NOW + 9 * MIN, "hourly", "sonnet", None, 3, None,
         None, {}, "free", "", ""],
    ], column_names=DECISION_COLS)  # fmt: skip
    chdb.insert("bot_resumes_inbox", [["acme", "bot-1", NOW - 2 * MIN, "Dana (key:abc)"]],
                column_names=["account_id", "bot_id", "resumed_at_ms", "resumed_by"])  # fmt: skip
    chdb.insert("decisions_inbox", [
        ["acme", "bot-1", 2, NOW - 2 * MIN + 40, None, None, "sonnet", None, 3, None, None, {},
         "free", "", ""],
    ], column_names=DECISION_COLS)  # fmt: skip
    rows = api.get("/v1/accounts/acme/decisions", headers=h).json()
    resumes = [r for r in rows if r["resumed_by"] is not None]
    assert [r["resumed_by"] for r in resumes] == ["Dana (key:abc)"]
    assert [r["version"] for r in rows if r["resumed_by"] is None] == [2, 1]
    state = {b["bot_id"]: b for b in api.get("/v1/accounts/acme/live", headers=h).json()["bots"]}
    assert state["bot-1"]["state"]["version"] == 2
    assert state["bot-1"]["state"]["blocked_until_ms"] is None


def test_the_live_panel_shows_a_following_bot_its_accounts_state() -> None:
    """A bot's last row is its own while its block or throttle is in force; once that ended
    it follows the account's ``*`` state (its last row is only the moment it went back)."""
    from capstream.api.dashboard.live import BotState, in_force

    def row(v: int, blocked: int | None = None, throttled: int | None = None) -> BotState:
        return BotState(
            version=v, updated_at_ms=1_000, blocked_until_ms=blocked, block_policy_id=None,
            model="m", downgraded_until_ms=None, batching_interval_s=60 if throttled else 3,
            throttled_until_ms=throttled, throttle_reason="loop_suspected" if throttled else None,
            caps=[],
        )  # fmt: skip

    star = row(9)
    states = {"*": star, "looping": row(3, throttled=5_000), "was": row(4, blocked=2_000)}
    assert in_force(states, "looping", 4_000) is states["looping"]
    assert in_force(states, "was", 4_000) is star  # its own block ended at 2,000
    assert in_force(states, "never-seen", 4_000) is star
    assert in_force(states, "*", 4_000) is star
    assert in_force({}, "bot", 4_000) is None
