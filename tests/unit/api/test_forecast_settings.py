"""Forecast alerts through the settings API: opt in per cap with a lead time (PUT and
PATCH), kept by other patches, refused without its cap or out of range (422 naming it)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from capstream.processors.catalog import core_settings
from capstream.streams.records import TenantSettingsRecord

S = "/v1/accounts/acme/settings"


def _last(memlog: Any) -> TenantSettingsRecord:
    return TenantSettingsRecord.from_bytes(memlog.log["unit.tenants"][-1][1])


def test_a_forecast_lead_per_cap_is_set_kept_and_cleared(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    caps = {"text": {"daily_micro": 5_000_000, "daily_forecast_lead_s": 7200}}
    r = client.patch(S, json={"caps": caps}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["caps"]["text"]["daily_forecast_lead_s"] == 7200
    rec = _last(memlog)
    assert rec.caps["text"].daily_forecast_lead_s == 7200
    # the worker's core reads it: the daily forecast is on, two hours ahead
    assert core_settings(rec).caps["text"].daily_forecast_lead_s == 7200
    # a PATCH naming only the monthly cap keeps the daily lead; one naming the lead alone
    # changes it (its cap is already set)
    r = client.patch(S, json={"caps": {"text": {"monthly_micro": 90_000_000}}}, headers=h)
    assert r.json()["caps"]["text"]["daily_forecast_lead_s"] == 7200
    r = client.patch(S, json={"caps": {"text": {"monthly_forecast_lead_s": 86_400}}}, headers=h)
    assert r.status_code == 200, r.text
    text = r.json()["caps"]["text"]
    assert (text["daily_forecast_lead_s"], text["monthly_forecast_lead_s"]) == (7200, 86_400)
    # null switches it off
    r = client.patch(S, json={"caps": {"text": {"daily_forecast_lead_s": None}}}, headers=h)
    assert r.json()["caps"]["text"]["daily_forecast_lead_s"] is None
    assert _last(memlog).caps["text"].daily_forecast_lead_s is None


def test_a_forecast_lead_without_its_cap_or_out_of_range_is_refused(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    before = len(memlog.log.get("unit.tenants", []))
    r = client.patch(S, json={"caps": {"vision": {"daily_forecast_lead_s": 3600}}}, headers=h)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "daily forecast lead needs a daily cap" in err["message"]
    assert err["fields"][0]["field"] == "caps.vision.daily_forecast_lead_s"
    for bad in (59, 86_401, -1):
        body = {"caps": {"text": {"daily_micro": 1_000, "daily_forecast_lead_s": bad}}}
        r = client.patch(S, json=body, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert "daily_forecast_lead_s" in r.json()["error"]["fields"][0]["field"], r.text
    assert len(memlog.log.get("unit.tenants", [])) == before  # nothing was written
