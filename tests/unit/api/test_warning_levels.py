"""Warning levels (soft thresholds) through the Policy API: on policies and on caps."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from capstream.streams.records import PolicyRecord, TenantSettingsRecord

BASE = "/v1/accounts/acme/policies"
S = "/v1/accounts/acme/settings"
BODY = {
    "name": "hourly", "metric": "messages", "threshold": 100, "window_seconds": 3600,
    "scope": "bot", "bot_id": "bot-1", "alert": {"recipients": ["ops@acme.test"]},
    "block": None, "category": None, "enabled": True,
}  # fmt: skip


def test_policy_warning_levels_default_edit_and_off(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme", bots=("bot-1",))
    r = client.post(BASE, json={**BODY, "policy_id": "p1"}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["warn_percents"] is None  # the default levels: 50, 80, 90
    r = client.patch(f"{BASE}/p1", json={"warn_percents": [75]}, headers=h)
    assert r.status_code == 200, r.text
    rec = PolicyRecord.from_bytes(memlog.log["unit.policies"][-1][1])
    assert (rec.warn_percents, rec.threshold) == ([75], 100)
    # a PATCH of something else keeps them; [] switches them off
    r = client.patch(f"{BASE}/p1", json={"threshold": 200}, headers=h)
    assert r.json()["warn_percents"] == [75]
    r = client.patch(f"{BASE}/p1", json={"warn_percents": []}, headers=h)
    assert PolicyRecord.from_bytes(memlog.log["unit.policies"][-1][1]).warn_percents == []
    for bad in ([0], [100], [50, 50], list(range(1, 12))):
        r = client.patch(f"{BASE}/p1", json={"warn_percents": bad}, headers=h)
        assert r.status_code == 422, (bad, r.text)
        where = r.json()["error"]["fields"][0]
        assert "warn_percents" in where["field"] + where["message"], r.text


def test_cap_warning_levels_per_period_survive_other_patches(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    caps = {"text": {"daily_micro": 5_000_000, "daily_warn_percents": [60, 95]}}
    r = client.patch(S, json={"caps": caps}, headers=h)
    assert r.status_code == 200, r.text
    r = client.patch(S, json={"caps": {"text": {"monthly_micro": 9_000_000}}}, headers=h)
    text = r.json()["caps"]["text"]
    assert (text["daily_warn_percents"], text["monthly_warn_percents"]) == ([60, 95], None)
    rec = TenantSettingsRecord.from_bytes(memlog.log["unit.tenants"][-1][1])
    assert rec.caps["text"].daily_warn_percents == [60, 95]
    r = client.patch(S, json={"caps": {"text": {"monthly_warn_percents": [100]}}}, headers=h)
    assert r.status_code == 422
    assert "monthly_warn_percents" in r.json()["error"]["fields"][0]["field"]
