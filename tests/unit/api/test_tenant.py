"""Cap behaviour settings, top-up requests and the ClickHouse read endpoints."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from capstream.streams.records import NotificationRecord, TenantSettingsRecord

S = "/v1/accounts/acme/settings"
NOW_MS = 1_780_000_000_000  # the clock of the unit app (conftest), 2026-05-28 UTC


def test_settings_round_trip_through_the_tenants_topic(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    assert client.get(S, headers=h).json()["owner_email"] == "owner@acme.test"
    body = {
        "timezone": "Asia/Karachi",
        "language": "ur",
        "caps": {"text": {"daily_micro": 5_000_000, "monthly_micro": 90_000_000}},
        "fallback_message": "Back {{TIMEFRAME}}!",
        "throttle": "strict",
    }
    r = client.patch(S, json=body, headers=h)
    assert r.status_code == 200, r.text
    key, value = memlog.log["unit.tenants"][-1]
    rec = TenantSettingsRecord.from_bytes(value)
    assert key == "acme"
    assert (rec.timezone, rec.language, rec.throttle, rec.plan) == (
        "Asia/Karachi",
        "ur",
        "strict",
        "free",
    )
    assert rec.caps["text"].daily_micro == 5_000_000
    assert rec.owner_email == "owner@acme.test"  # omitted = kept
    assert client.get(S, headers=h).json()["fallback_message"] == "Back {{TIMEFRAME}}!"


def test_unknown_timezone_is_a_field_error(client: TestClient, new_account: Any) -> None:
    h = new_account("acme")
    r = client.patch(S, json={"timezone": "Mars/Olympus"}, headers=h)
    assert r.status_code == 422
    (f,) = r.json()["error"]["fields"]
    assert f["field"] == "timezone"
    assert "IANA" in f["message"]


def test_auto_downgrade_only_on_pro_and_enterprise(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = new_account("acme", plan="starter")
    r = client.patch(S, json={"auto_downgrade": True}, headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "auto_downgrade"
    assert "Pro or Enterprise" in r.json()["error"]["message"]
    assert (
        client.put("/v1/accounts/acme/plan", json={"plan": "pro"}, headers=admin).status_code == 200
    )
    r = client.patch(S, json={"auto_downgrade": True}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["auto_downgrade"] is True
    # a downgrade of the plan that would leave auto-downgrade on is refused
    down = client.put("/v1/accounts/acme/plan", json={"plan": "free"}, headers=admin)
    assert down.status_code == 422


def test_only_the_admin_changes_the_plan(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = new_account("acme")
    r = client.patch(S, json={"plan": "enterprise"}, headers=h)
    assert r.status_code == 403
    assert client.put("/v1/accounts/acme/plan", json={"plan": "pro"}, headers=h).status_code == 403
    assert (
        client.patch(S, json={"plan": "enterprise"}, headers=admin).json()["plan"] == "enterprise"
    )
    assert client.get("/v1/accounts/acme", headers=h).json()["plan"] == "enterprise"


def test_free_plan_gets_the_upgrade_path(client: TestClient, new_account: Any, memlog: Any) -> None:
    h = new_account("acme")
    r = client.post("/v1/accounts/acme/topup-requests", json={}, headers=h)
    assert r.status_code == 402
    assert "Upgrade to Starter" in r.json()["error"]["message"]
    assert r.json()["error"]["cta"].startswith("Upgrade to Starter")
    assert "unit.notifications" not in memlog.log


def test_paid_topup_emails_the_owner_once_per_click(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme", plan="starter")
    body = {"category": "text", "period": "monthly", "requested_by": "sam", "note": "launch"}
    r = client.post("/v1/accounts/acme/topup-requests", json=body, headers=h)
    assert r.status_code == 202, r.text
    again = client.post("/v1/accounts/acme/topup-requests", json=body, headers=h)
    key, value = memlog.log["unit.notifications"][-1]
    n = NotificationRecord.from_bytes(value)
    assert (n.kind, n.recipients, n.account_id) == ("topup_request", ["owner@acme.test"], "acme")
    assert "sam" in n.body and "launch" in n.body
    assert f'"request_id": "{n.notification_id}"' in n.body  # how to approve it (issue 24)
    assert key == n.notification_id == r.json()["notification_id"]
    assert again.json()["notification_id"] == n.notification_id  # the notifier sends it once


def _event(account: str, bot: str, ms: int, **amounts: int) -> dict[str, Any]:
    base = {"tokens_in": 0, "tokens_out": 0, "messages": 0, "conversation_started": 0,
            "credits_micro": 0, "category": "text"}  # fmt: skip
    return {**base, **amounts, "account_id": account, "bot_id": bot, "occurred_at_ms": ms}


def test_usage_against_policies_and_caps_sees_only_the_callers_account(
    client: TestClient, new_account: Any, clickhouse: Any
) -> None:
    h = new_account("acme", bots=("b1", "b2"))
    new_account("globex")
    client.patch(S, json={"caps": {"text": {"daily_micro": 1000}}}, headers=h)
    policy = {"metric": "messages", "threshold": 10, "window_seconds": 3600,
              "scope": "account_each_bot", "alert": {}}  # fmt: skip
    client.post("/v1/accounts/acme/policies", json={**policy, "policy_id": "msgs"}, headers=h)
    clickhouse.events += [
        _event("acme", "b1", NOW_MS - 60_000, messages=4, credits_micro=300),
        _event("acme", "b2", NOW_MS - 60_000, messages=9, credits_micro=800),
        _event("acme", "b2", NOW_MS - 7_200_000, messages=50),  # outside the hour
        _event("globex", "b1", NOW_MS - 1000, messages=999, credits_micro=10**9),
    ]
    r = client.get("/v1/accounts/acme/usage", headers=h)
    assert r.status_code == 200, r.text
    (p,) = r.json()["policies"]
    assert (p["used"], p["threshold"], p["breached"]) == (9, 10, False)
    (cap,) = r.json()["caps"]
    assert (cap["period"], cap["used_micro"], cap["reached"]) == ("daily", 1100, True)
    assert cap["cta"] == "Upgrade to Starter →"
    assert all(params["account_id"] == "acme" for _, params in clickhouse.calls)


def test_feed_and_decisions_are_filtered_by_account(
    client: TestClient, new_account: Any, clickhouse: Any
) -> None:
    h = new_account("acme")
    row = {"bot_id": "b", "conversation_id": "c", "local_day": "2026-05-28", "category": "text",
           "period": "daily", "attempts": 3, "message": "AI reply paused", "cta": None}  # fmt: skip
    clickhouse.feed += [{**row, "account_id": "acme"}, {**row, "account_id": "globex"}]
    clickhouse.decisions += [
        {"account_id": "acme", "bot_id": "b", "updated_at": 2, "blocked_until": 9},
        {"account_id": "acme", "bot_id": "b", "updated_at": 5, "blocked_until": None},
        {"account_id": "globex", "bot_id": "x", "updated_at": 7, "blocked_until": None},
    ]
    feed = client.get("/v1/accounts/acme/feed", params={"day": "2026-05-28"}, headers=h).json()
    assert [(f["account_id"], f["attempts"]) for f in feed] == [("acme", 3)]
    today = client.get("/v1/accounts/acme/feed", headers=h).json()
    assert today == feed  # NOW_MS is 2026-05-28 in UTC
    dec = client.get("/v1/accounts/acme/decisions", params={"limit": 5}, headers=h).json()
    assert [d["updated_at"] for d in dec] == [5, 2]
    bad = client.get("/v1/accounts/acme/feed", params={"day": "yesterday"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "day"


def test_clickhouse_failure_is_a_503_not_a_500(
    client: TestClient, new_account: Any, clickhouse: Any
) -> None:
    h = new_account("acme")

    def broken(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        raise ConnectionError("refused")

    client.app.state.capstream.query = broken  # type: ignore[attr-defined]
    r = client.get("/v1/accounts/acme/decisions", headers=h)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "unavailable"


WHOLE_SETTINGS = {
    "timezone": "Asia/Karachi",
    "language": "ur",
    "caps": {"text": {"daily_micro": 5_000_000, "monthly_micro": 90_000_000}},
    "fallback_message": "Back {{TIMEFRAME}}!",
    "auto_downgrade": False,
    "premium_model": "claude-sonnet-4-6",
    "downgrade_model": "claude-haiku",
    "throttle": "strict",
}


def test_a_partial_put_is_refused_naming_what_is_missing_and_changes_nothing(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    """Issue 18 item 2: ``{"language": "ar"}`` no longer resets the zone and deletes caps."""
    h = new_account("acme")
    assert client.put(S, json=WHOLE_SETTINGS, headers=h).status_code == 200
    published = len(memlog.log["unit.tenants"])
    r = client.put(S, json={"language": "ar"}, headers=h)
    assert r.status_code == 422
    missing = {f["field"] for f in r.json()["error"]["fields"]}
    assert missing == set(WHOLE_SETTINGS) - {"language"}
    assert "PATCH" in r.json()["error"]["message"] and "timezone" in r.json()["error"]["message"]
    assert len(memlog.log["unit.tenants"]) == published
    kept = client.get(S, headers=h).json()
    assert (kept["timezone"], kept["language"]) == ("Asia/Karachi", "ur")
    assert kept["caps"]["text"]["daily_micro"] == 5_000_000


def _default_levels(caps: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Caps as the API returns them: warning levels left at their default are null, and so
    are the forecast leads not asked for and the amounts in money not given."""
    levels = {"daily_warn_percents": None, "monthly_warn_percents": None,
              "daily_forecast_lead_s": None, "monthly_forecast_lead_s": None,
              "daily_amount_micro": None, "monthly_amount_micro": None}  # fmt: skip
    return {cat: {**c, **levels} for cat, c in caps.items()}


def test_patch_changes_only_what_it_names(client: TestClient, new_account: Any) -> None:
    h = new_account("acme")
    both = {"text": {"daily_micro": 5_000_000, "monthly_micro": 90_000_000},
            "vision": {"daily_micro": 1_000, "monthly_micro": None}}  # fmt: skip
    assert client.put(S, json={**WHOLE_SETTINGS, "caps": both}, headers=h).status_code == 200
    r = client.patch(S, json={"language": "ar"}, headers=h)
    assert r.status_code == 200, r.text
    s = r.json()
    assert (s["language"], s["timezone"], s["throttle"]) == ("ar", "Asia/Karachi", "strict")
    assert s["caps"] == _default_levels(both)
    assert s["fallback_message"] == "Back {{TIMEFRAME}}!"
    # caps: only the category and period named; null removes that one cap
    r = client.patch(S, json={"caps": {"text": {"monthly_micro": None}}}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["caps"] == _default_levels({
        "text": {"daily_micro": 5_000_000, "monthly_micro": None},
        "vision": {"daily_micro": 1_000, "monthly_micro": None},
    })  # fmt: skip
    r = client.patch(S, json={"timezone": None}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "timezone"


def test_a_daily_cap_above_the_monthly_one_is_refused(client: TestClient, new_account: Any) -> None:
    """Issue 18 item 4: it could never take effect (the monthly cap stops the category first)."""
    h = new_account("acme")
    bad = {"text": {"daily_micro": 9_000_000, "monthly_micro": 5_000_000}}
    for r in (
        client.put(S, json={**WHOLE_SETTINGS, "caps": bad}, headers=h),
        client.patch(S, json={"caps": bad}, headers=h),
    ):
        assert r.status_code == 422, r.text
        (f,) = r.json()["error"]["fields"]
        assert f["field"] == "caps.text.daily_micro"
        assert "above the monthly" in f["message"] and "9000000" in f["message"]
    assert client.get(S, headers=h).json()["caps"] == {}
    # a PATCH that lowers the monthly cap under an existing daily one is refused too
    ok = {"text": {"daily_micro": 1_000_000, "monthly_micro": 5_000_000}}
    assert client.patch(S, json={"caps": ok}, headers=h).status_code == 200
    r = client.patch(S, json={"caps": {"text": {"monthly_micro": 500_000}}}, headers=h)
    assert r.status_code == 422
