"""Calendar policies (issue 24.4) through the Policy API: create, switch, refuse, read."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
from fastapi.testclient import TestClient

from capstream.streams.codecs import SCHEMA_DIR, Codec, _named_schemas
from capstream.streams.records import PolicyRecord

BASE = "/v1/accounts/acme/policies"
NOW_MS = 1_780_000_000_000  # the unit app's clock: Thursday 2026-05-28 20:26:40 UTC
WEEKLY = {
    "name": "weekly tokens", "metric": "tokens", "threshold": 50_000, "period": "week",
    "scope": "account_total", "alert": {"recipients": ["ops@acme.test"]},
}  # fmt: skip


def _event(account: str, at: int, tokens: int) -> dict[str, Any]:
    return {"account_id": account, "bot_id": "b1", "occurred_at_ms": at, "category": "text",
            "tokens_in": tokens, "tokens_out": 0, "messages": 1, "conversation_started": 0,
            "credits_micro": 0}  # fmt: skip


def test_a_calendar_policy_is_created_published_and_says_it_counts_its_period(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    r = client.post(BASE, json={**WEEKLY, "policy_id": "wk"}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["period"], body["window_seconds"]) == ("week", 0)
    assert body["window_seeding"]["kind"] == "calendar"
    assert "current week" in body["window_seeding"]["message"]
    rec = PolicyRecord.from_bytes(memlog.log["unit.policies"][-1][1])
    assert (rec.period, rec.window_seconds) == ("week", 0)
    assert client.get(f"{BASE}/wk", headers=h).json()["period"] == "week"


def test_a_policy_needs_exactly_one_of_a_window_and_a_period(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme")
    both = client.post(BASE, json={**WEEKLY, "window_seconds": 3600}, headers=h)
    assert both.status_code == 422
    assert both.json()["error"]["fields"][0]["field"] == "period"
    neither = client.post(BASE, json={k: v for k, v in WEEKLY.items() if k != "period"},
                          headers=h)  # fmt: skip
    assert neither.status_code == 422
    assert neither.json()["error"]["fields"][0]["field"] == "window_seconds"
    for bad in ("fortnight", "Week", 7, True):
        r = client.post(BASE, json={**WEEKLY, "period": bad}, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert "period" in r.json()["error"]["fields"][0]["field"]


def test_patch_switches_between_a_rolling_window_and_a_calendar_period(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    rolling = {**WEEKLY, "policy_id": "p"}
    del rolling["period"]
    rolling["window_seconds"] = 3600
    assert client.post(BASE, json=rolling, headers=h).status_code == 201
    r = client.patch(f"{BASE}/p", json={"period": "month"}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["period"], r.json()["window_seconds"]) == ("month", 0)
    r = client.patch(f"{BASE}/p", json={"threshold": 9}, headers=h)  # stays calendar
    assert (r.json()["period"], r.json()["threshold"]) == ("month", 9)
    r = client.patch(f"{BASE}/p", json={"window_seconds": 600}, headers=h)
    assert (r.json()["period"], r.json()["window_seconds"]) == (None, 600)
    rec = PolicyRecord.from_bytes(memlog.log["unit.policies"][-1][1])
    assert (rec.period, rec.window_seconds) == (None, 600)
    # PUT: window_seconds must be named (null for a calendar policy)
    whole = {**WEEKLY, "bot_id": None, "category": None, "block": None, "enabled": True}
    r = client.put(f"{BASE}/p", json=whole, headers=h)
    assert r.status_code == 422 and "window_seconds" in r.text
    r = client.put(f"{BASE}/p", json={**whole, "window_seconds": None}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["period"] == "week"


def test_usage_of_a_calendar_policy_counts_from_the_local_period_start(
    client: TestClient, new_account: Any, clickhouse: Any
) -> None:
    h = new_account("acme")
    client.patch("/v1/accounts/acme/settings", json={"timezone": "Asia/Karachi"}, headers=h)
    client.post(BASE, json={**WEEKLY, "policy_id": "wk"}, headers=h)
    monday_khi = 1_779_649_200_000  # Monday 2026-05-25 00:00 in Asia/Karachi (UTC+5)
    clickhouse.events += [
        _event("acme", monday_khi + 60_000, 30_000),  # Monday, this local week
        _event("acme", monday_khi - 60_000, 99_000),  # Sunday: last week
        _event("acme", NOW_MS - 1_000, 25_000),
    ]
    (p,) = client.get("/v1/accounts/acme/usage", headers=h).json()["policies"]
    assert (p["period"], p["period_start_ms"]) == ("week", monday_khi)
    assert (p["used"], p["breached"]) == (55_000, True)


def test_policy_records_written_before_the_period_field_still_read() -> None:
    # A record in the policies topic written with the previous schema (history/Policy.2)
    # reads as a rolling-window policy: the new field's default is null.
    old_schema = json.loads((SCHEMA_DIR / "history" / "Policy.2.avsc").read_text())
    assert "period" not in {f["name"] for f in old_schema["fields"]}
    fp = Codec("Policy").register_writer(old_schema)
    _, named = _named_schemas()
    parsed = fastavro.parse_schema(old_schema, named_schemas=dict(named))
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp)
    fastavro.schemaless_writer(buf, parsed, {
        "policy_id": "p", "account_id": "acme", "name": "n", "metric": "tokens",
        "threshold": 10, "window_seconds": 3600, "scope": "account_total", "bot_id": None,
        "category": None, "alert": None, "block": {"duration_seconds": 60}, "enabled": True,
        "version": 1, "updated_at_ms": 5, "warn_percents": [50],
    })  # fmt: skip
    rec = PolicyRecord.from_bytes(buf.getvalue())
    assert (rec.window_seconds, rec.period, rec.warn_percents) == (3600, None, [50])
    new = rec.model_copy(update={"window_seconds": 0, "period": "month"})
    assert PolicyRecord.from_bytes(new.to_bytes()).period == "month"


def test_the_openapi_schema_documents_the_period(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()["components"]["schemas"]
    for body in ("NewPolicyBody", "PolicyPatchBody", "PolicyReplaceBody"):
        assert {"day", "week", "month"} <= set(_enum_values(spec[body]["properties"]["period"]))
    assert "window_seconds" in spec["PolicyReplaceBody"]["required"]
    assert "calendar" in spec["WindowSeeding"]["properties"]["kind"]["enum"]


def _enum_values(node: Any) -> list[str]:
    if isinstance(node, dict):
        return list(node.get("enum", [])) + [v for x in node.values() for v in _enum_values(x)]
    if isinstance(node, list):
        return [v for x in node for v in _enum_values(x)]
    return []
