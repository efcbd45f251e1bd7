"""Budgets in money through the real pipeline (issue 24 item 2): a tenant's price table and
a daily cap in dollars over HTTP; usage recorded with tokens only by a recorder whose price
book reads the prices topic; the derived credits reach the cap at the worker and the cap is
published on the control topic; a rate change converts the cap again and the category
resumes. Real broker, real worker process."""

from __future__ import annotations

import uuid

from admin_api import ADMIN
from fastapi.testclient import TestClient
from test_worker_harness import ControlLog, WorkerProcess, wait_for

from capstream.gateway import KafkaPriceBook, UsageRecorder
from capstream.streams.settings import Settings

CATALOG = "capstream_processor_catalog_records_total"
M = 1_000_000


def call(rec: UsageRecorder, model: str = "gpt-4o") -> None:
    """One AI call of 1,000 input and 1,000 output tokens, no credits given."""
    assert rec.record(event_id=uuid.uuid4().hex, account_id="acme", bot_id="bot-1",
                      conversation_id="c", category="text", model=model, tokens_in=1_000,
                      tokens_out=1_000, messages=1)  # fmt: skip
    assert rec.flush(10) == 0


def test_tokens_priced_by_the_table_reach_a_cap_set_in_dollars(
    deployment: Settings, api: TestClient
) -> None:
    control = ControlLog(deployment)
    worker = WorkerProcess(deployment)
    books: list[KafkaPriceBook] = []
    try:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        account = {"account_id": "acme", "plan": "starter", "owner_email": "o@acme.test"}
        r = api.post("/v1/accounts", json=account, headers=admin)
        auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
        assert api.put("/v1/accounts/acme/bots/bot-1", json={}, headers=auth).is_success
        # the platform prices gpt-4o; the tenant sets its own currency and rate only
        platform = {
            "currency": "USD",
            "credits_per_unit_micro": M,
            "models": {
                "gpt-4o": {"input_per_mtok_micro": 2_500_000, "output_per_mtok_micro": 10 * M}
            },
        }
        assert api.put("/v1/prices", json=platform, headers=admin).status_code == 200
        table = {"currency": "USD", "credits_per_unit_micro": M, "models": {}}
        assert api.put("/v1/accounts/acme/prices", json=table, headers=auth).status_code == 200
        # a daily text cap of 0.05 USD = 50,000 micro-credits at 1 credit per USD
        r = api.patch(
            "/v1/accounts/acme/settings",
            json={"caps": {"text": {"daily_amount_micro": 50_000}}},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        assert r.json()["caps"]["text"]["daily_micro"] == 50_000
        wait_for(lambda: worker.metric(CATALOG) >= 2, 30, "the settings at the worker")

        book = KafkaPriceBook(deployment)
        books.append(book)
        assert book.wait_ready(30)
        with UsageRecorder(deployment, linger_ms=1, prices=book) as rec:
            # each call: 1,000 x 2.50 + 1,000 x 10.00 USD per 1M = 0.0125 USD = 12,500 µcredits
            for _ in range(3):
                call(rec)
            call(rec, model="not-in-any-table")  # recorded with 0 credits, counted
            wait_for(lambda: worker.metric("capstream_processor_events_total") >= 4, 60,
                     "the events at the worker")  # fmt: skip
            latest = control.latest("acme", "bot-1")
            assert latest is None or "text" not in latest.caps  # 37,500 of 50,000
            assert book.stats.unpriced == 1 and book.stats.priced == 3
        # a restarted gateway (a new book, a new recorder) prices the same: the table is
        # read from the compacted topic, not from the process
        book2 = KafkaPriceBook(deployment)
        books.append(book2)
        assert book2.wait_ready(30)
        with UsageRecorder(deployment, linger_ms=1, prices=book2) as rec:
            call(rec)  # 50,000: the cap
        capped = control.wait("acme", "bot-1", lambda s: "text" in s.caps, timeout=60)
        assert capped.caps["text"].period == "daily"

        # 1 USD = 2 credits now: the cap converts again to 100,000 and the text resumes
        r = api.patch("/v1/accounts/acme/prices", json={"credits_per_unit_micro": 2 * M},
                      headers=auth)  # fmt: skip
        assert r.status_code == 200, r.text
        s = api.get("/v1/accounts/acme/settings", headers=auth).json()
        assert (s["caps"]["text"]["daily_amount_micro"], s["caps"]["text"]["daily_micro"]) == (
            50_000, 100_000)  # fmt: skip
        resumed = control.wait("acme", "bot-1", lambda s: "text" not in s.caps, timeout=60)
        assert resumed.version > capped.version
        wait_for(lambda: book2.credits("acme", "gpt-4o", "text", 1_000, 1_000) == 25_000, 30,
                 "the new rate at the gateway's book")  # fmt: skip
    finally:
        for b in books:
            b.close()
        worker.stop()
        control.close()
