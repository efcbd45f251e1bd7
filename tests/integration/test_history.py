"""The history through the real pipeline (issue 24 item 5): API -> topics -> worker ->
control and notifications topics -> sink -> ClickHouse (chDB) -> GET .../history: an alert
with its bot, a block lifted by a named person, a cap period ended by a grant, the grant;
filters by bot and time; another tenant sees none of it. Real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from admin_api import tenant
from fastapi.testclient import TestClient
from sink_helpers import sink_running
from test_worker_harness import ControlLog, WorkerProcess, wait_for

from capstream.gateway import UsageRecorder
from capstream.streams.settings import Settings


def test_alerts_blocks_caps_and_grants_are_in_the_history(
    deployment: Settings, api: TestClient, group_id: Callable[[], str]
) -> None:
    control = ControlLog(deployment)
    worker = WorkerProcess(deployment)
    try:
        auth = tenant(api, "acme", "bot-1", "bot-2")
        other = tenant(api, "globex", "bot-1")
        r = api.post("/v1/accounts/acme/policies", headers=auth, json={
            "policy_id": "p1", "name": "Hourly tokens", "metric": "tokens", "threshold": 1_000,
            "window_seconds": 3600, "scope": "bot", "bot_id": "bot-1",
            "alert": {"recipients": []}, "block": {"duration_seconds": 3600}})  # fmt: skip
        assert r.status_code == 201, r.text
        r = api.patch("/v1/accounts/acme/settings", headers=auth,
                      json={"caps": {"text": {"daily_micro": 10_000}}})  # fmt: skip
        assert r.status_code == 200, r.text
        wait_for(lambda: worker.metric("capstream_processor_catalog_records_total") >= 4, 30,
                 "the policy and settings at the worker")  # fmt: skip
        with sink_running(deployment, group_id=group_id()), \
                UsageRecorder(deployment, linger_ms=1) as rec:  # fmt: skip

            def use(bot: str, **amounts: int) -> None:
                assert rec.record(event_id=uuid.uuid4().hex, account_id="acme", bot_id=bot,
                                  conversation_id="c", category="text", model="m",
                                  messages=1, **amounts)  # fmt: skip
                assert rec.flush(10) == 0

            use("bot-1", tokens_in=1_500)  # the policy: alert + block of bot-1
            control.wait("acme", "bot-1", lambda s: s.blocked_until_ms is not None)
            r = api.post("/v1/accounts/acme/bots/bot-1/resume", json={"requested_by": "Dana"},
                         headers=auth)  # fmt: skip
            assert r.status_code == 202, r.text
            control.wait("acme", "bot-1", lambda s: s.blocked_until_ms is None)
            use("bot-2", tokens_in=1, credits_micro=10_000)  # the daily text cap
            control.wait("acme", "bot-2", lambda s: "text" in s.caps)
            r = api.post("/v1/accounts/acme/grants", headers=auth, json={
                "grant_id": "g1", "category": "text", "period": "daily",
                "amount_micro": 5_000, "granted_by": "Sam"})  # fmt: skip
            assert r.status_code == 201, r.text
            control.wait("acme", "bot-2", lambda s: "text" not in s.caps)

            def entries(**params: Any) -> list[dict[str, Any]]:
                r = api.get("/v1/accounts/acme/history", params=params, headers=auth)
                assert r.status_code == 200, r.text
                return list(r.json()["entries"])

            def complete() -> list[dict[str, Any]] | None:
                got = entries()
                kinds = {e["kind"] for e in got}
                block = next((e for e in got if e["kind"] == "block"), None)
                cap = next((e for e in got if e["kind"] == "cap"), None)
                alert = next((e for e in got if e["kind"] == "alert"), None)
                ready = (
                    {"alert", "block", "cap", "grant"} <= kinds
                    and block is not None and block["lifted_by"] is not None
                    and cap is not None and cap["lifted_by"] is not None
                    and alert is not None and alert["bot_id"] is not None
                )  # fmt: skip
                return got if ready else None

            got = wait_for(complete, 60, "the history from the sink")
        alert = next(e for e in got if e["kind"] == "alert")
        assert (alert["bot_id"], alert["policy_id"], alert["policy_name"]) == (
            "bot-1", "p1", "Hourly tokens")  # fmt: skip
        (block,) = [e for e in got if e["kind"] == "block"]
        assert (block["bot_id"], block["policy_id"], block["ongoing"]) == ("bot-1", "p1", False)
        assert block["lifted_by"].startswith("Dana (key:")
        assert block["at_ms"] <= block["lifted_at_ms"] <= block["until_ms"]
        (cap,) = [e for e in got if e["kind"] == "cap"]
        assert (cap["category"], cap["period"], cap["ongoing"]) == ("text", "daily", False)
        assert cap["lifted_by"].startswith("grant g1 by Sam (key:")
        (grant,) = [e for e in got if e["kind"] == "grant"]
        assert (grant["ref"], grant["amount_micro"]) == ("g1", 5_000)
        assert [e["at_ms"] for e in got] == sorted((e["at_ms"] for e in got), reverse=True)

        # filters: bot-2 had no alert and no block; a kind; a range before it all
        assert {e["kind"] for e in entries(bot_id="bot-2")} == {"cap", "grant"}
        assert {e["kind"] for e in entries(kind=["block", "alert"])} == {"block", "alert"}
        first = min(e["at_ms"] for e in got)
        assert entries(from_ms=first - 3_600_000, to_ms=first - 1) == []
        # tenancy: globex sees nothing of acme's, and cannot ask for it
        r = api.get("/v1/accounts/globex/history", headers=other)
        assert r.status_code == 200 and r.json()["entries"] == []
        assert api.get("/v1/accounts/acme/history", headers=other).status_code == 404
        bad = api.get("/v1/accounts/acme/history", params={"bot_id": "ghost"}, headers=auth)
        assert bad.status_code == 422
    finally:
        assert worker.stop() == 0, worker.log()
        control.close()
