"""Switching notification kinds off through the Policy API (tenant settings)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from capstream.streams.records import TenantSettingsRecord

S = "/v1/accounts/acme/settings"


def test_kinds_switched_off_are_kept_until_changed(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    assert client.get(S, headers=h).json()["muted_notifications"] == []
    r = client.patch(
        S, json={"muted_notifications": ["throttle_engaged", "cap_warning"]}, headers=h
    )
    assert r.status_code == 200, r.text
    rec = TenantSettingsRecord.from_bytes(memlog.log["unit.tenants"][-1][1])
    assert rec.muted_notifications == ["cap_warning", "throttle_engaged"]
    # other changes keep them, a whole PUT that leaves them out keeps them too
    r = client.patch(S, json={"language": "ar"}, headers=h)
    assert r.json()["muted_notifications"] == ["cap_warning", "throttle_engaged"]
    whole = {k: v for k, v in r.json().items() if k in (
        "timezone", "language", "caps", "fallback_message", "auto_downgrade", "premium_model",
        "downgrade_model", "throttle")}  # fmt: skip
    r = client.put(S, json=whole, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["muted_notifications"] == ["cap_warning", "throttle_engaged"]
    r = client.patch(S, json={"muted_notifications": []}, headers=h)
    assert r.json()["muted_notifications"] == []
    # the core alerts cannot be switched off
    r = client.patch(S, json={"muted_notifications": ["policy_alert"]}, headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"].startswith("muted_notifications")
