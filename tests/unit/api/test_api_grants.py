"""Credit grants over HTTP (issue 24 item 1): recorded on the grants topic, idempotent by
grant id, refused where they cannot raise anything, listed, and shown in usage."""

from __future__ import annotations

from typing import Any

from conftest import NOW_MS
from fastapi.testclient import TestClient

from capstream.streams.records import CapGrantRecord

G = "/v1/accounts/acme/grants"
S = "/v1/accounts/acme/settings"


def paid(client: TestClient, new_account: Any, plan: str = "starter") -> dict[str, str]:
    h = new_account("acme", plan=plan, bots=("bot-1",))
    caps = {"text": {"daily_micro": 1_000_000, "monthly_micro": 20_000_000}}
    assert client.patch(S, json={"caps": caps, "timezone": "Asia/Kuala_Lumpur"},
                        headers=h).status_code == 200  # fmt: skip
    return h


def test_a_grant_is_recorded_and_raises_the_cap_for_the_current_local_day(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = paid(client, new_account)
    r = client.post(G, json={"category": "text", "period": "daily", "amount_micro": 500_000,
                             "granted_by": "Dana", "note": "launch day"}, headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    g = r.json()
    key, value = memlog.log["unit.grants"][-1]
    rec = CapGrantRecord.from_bytes(value)
    assert key == f"acme/{g['grant_id']}"
    # 2026-05-28 ~20:26 UTC is already the 29th in Kuala Lumpur: the tenant's day counts
    assert (rec.period_key, rec.amount_micro, rec.granted_at_ms) == ("2026-05-29", 500_000, NOW_MS)
    assert rec.granted_by.startswith("Dana (key:")
    assert g["applies_now"] is True and g["cap_micro"] == 1_500_000
    assert "raised today to 1.5 credits (1,500,000 micro-credits)" in g["message"]
    listed = client.get(G, headers=h).json()
    assert [x["grant_id"] for x in listed] == [g["grant_id"]]
    assert client.get(f"{G}/{g['grant_id']}", headers=h).json()["cap_micro"] == 1_500_000
    usage = client.get("/v1/accounts/acme/usage", headers=h).json()
    daily = next(c for c in usage["caps"] if (c["category"], c["period"]) == ("text", "daily"))
    assert daily["cap_micro"] == 1_500_000


def test_the_same_grant_again_adds_nothing_and_other_terms_are_a_conflict(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = paid(client, new_account)
    body = {"request_id": "n-123", "category": "text", "period": "monthly",
            "amount_micro": 5_000_000}  # fmt: skip
    first = client.post(G, json=body, headers=h)
    assert first.status_code == 201, first.text
    assert first.json()["grant_id"] == "topup-n-123"  # approving a request: one grant per request
    again = client.post(G, json=body, headers=h)
    assert again.status_code == 200 and "nothing was added" in again.json()["message"]
    assert again.json()["cap_micro"] == 25_000_000
    assert len(memlog.log["unit.grants"]) == 1
    other = client.post(G, json={**body, "amount_micro": 9_000_000}, headers=h)
    assert other.status_code == 409


def test_grants_that_cannot_raise_anything_are_refused(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = paid(client, new_account)
    r = client.post(G, json={"category": "vision", "period": "daily", "amount_micro": 1},
                    headers=h)  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "period"
    assert "no daily cap" in r.json()["error"]["message"]
    r = client.post(G, json={"category": "text", "period": "daily", "amount_micro": 1,
                             "expires_at_ms": NOW_MS - 1}, headers=h)  # fmt: skip
    assert r.json()["error"]["fields"][0]["field"] == "expires_at_ms"
    for bad in ({"amount_micro": 0}, {"amount_micro": "5"}, {"period": "weekly"}):
        body = {"category": "text", "period": "daily", "amount_micro": 1, **bad}
        assert client.post(G, json=body, headers=h).status_code == 422
    assert client.get(G, headers=h).json() == []


def test_free_plan_keys_get_the_upgrade_path_the_platform_may_grant(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = new_account("acme", plan="free")
    client.patch(S, json={"caps": {"text": {"daily_micro": 60_000}}}, headers=h)
    body = {"category": "text", "period": "daily", "amount_micro": 40_000}
    r = client.post(G, json=body, headers=h)
    assert r.status_code == 402 and r.json()["error"]["cta"]
    r = client.post(G, json=body, headers=admin)
    assert r.status_code == 201 and r.json()["granted_by"] == "admin"


def test_a_tenant_sees_only_its_own_grants(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = paid(client, new_account)
    other = new_account("globex", plan="pro")
    body = {"category": "text", "period": "daily", "amount_micro": 1, "grant_id": "mine"}
    assert client.post(G, json=body, headers=h).status_code == 201
    assert client.get(G, headers=other).status_code == 404
    assert client.post(G, json=body, headers=other).status_code == 404
    assert client.get("/v1/accounts/globex/grants", headers=other).json() == []
    assert client.get("/v1/accounts/globex/grants/mine", headers=other).status_code == 404
