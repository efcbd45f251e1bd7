"""The SDK's price books derive credits from tokens as the shared vectors say (prices.json)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from capstream.core.pricing import amount_to_credits
from capstream.gateway import NotDeliveredError, PriceBook, UsageRecorder
from capstream.gateway.pricebook import KafkaPriceBook, core_table
from capstream.gateway.wire import encode_batch_texts
from capstream.streams.codecs import codec
from capstream.streams.price_records import PriceTableRecord
from capstream.streams.settings import Settings

VECTORS = Path(__file__).resolve().parents[3] / "testdata" / "vectors"


def load() -> Any:
    return json.loads((VECTORS / "prices.json").read_text(encoding="utf-8"))


def long(v: Any) -> Any:
    return int(v) if isinstance(v, str) and v.isdigit() else v


def book_of(doc: Any) -> PriceBook:
    return PriceBook(
        core_table(PriceTableRecord.from_bytes(bytes.fromhex(t["hex"]))) for t in doc["tables"]
    )


def test_the_tables_decode_to_their_records_and_derive_the_vector_credits() -> None:
    doc = load()
    for t in doc["tables"]:
        rec = PriceTableRecord.from_bytes(bytes.fromhex(t["hex"]))
        assert rec.model_dump() == {k: long(v) for k, v in t["record"].items()}
    book = book_of(doc)
    for c in doc["cases"]:
        got = book.credits(
            c["account_id"], c["model"], c["category"], c["tokens_in"], c["tokens_out"]
        )
        assert got == long(c["credits_micro"]), c
    unpriced = sum(c["credits_micro"] is None for c in doc["cases"])
    assert book.stats.unpriced == unpriced and book.stats.priced == len(doc["cases"]) - unpriced
    for a in doc["amounts"]:
        assert amount_to_credits(a["amount_micro"], a["credits_per_unit_micro"]) == long(
            a["credits_micro"]
        )


def test_the_recorder_derives_credits_when_left_out_and_keeps_them_when_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    doc = load()
    book = book_of(doc)
    nowhere = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="vectors")
    recorder = UsageRecorder(nowhere, prices=book, producer_config={"log_level": 0})
    expected = []
    try:
        for i, c in enumerate(doc["cases"]):
            fields = {
                "event_id": f"e-{i}", "account_id": c["account_id"], "bot_id": "b",
                "conversation_id": "c", "category": c["category"], "model": c["model"],
                "tokens_in": c["tokens_in"], "tokens_out": c["tokens_out"], "messages": 1,
                "conversation_started": True, "occurred_at_ms": 1_795_000_000_000,
            }  # fmt: skip
            with caplog.at_level(logging.WARNING, logger="capstream.gateway.pricebook"):
                assert recorder.record(**fields)
            expected.append(long(c["credits_micro"]) or 0)
            assert recorder.record(**fields, credits_micro=7)
            expected.append(7)
        value = encode_batch_texts("b", "p", 1, [body for _, body in recorder._queue])
        credits = [e["credits_micro"] for e in codec("UsageBatch").decode(value)["events"]]
        assert credits == expected
    finally:
        with pytest.raises(NotDeliveredError):  # no broker: the events stay unconfirmed
            recorder.close(timeout=0.1)
    # an unpriced model is named once in the log, whatever its number of events
    assert sum("no price for model 'unknown-model'" in r.getMessage() for r in caplog.records) == 1


def test_without_a_price_book_an_event_without_credits_has_none() -> None:
    nowhere = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="vectors")
    recorder = UsageRecorder(nowhere, producer_config={"log_level": 0})
    try:
        assert recorder.record(
            event_id="e", account_id="a", bot_id="b", conversation_id="c", category="text",
            model="gpt-4o", tokens_in=1000, tokens_out=1000, occurred_at_ms=1_795_000_000_000,
        )  # fmt: skip
        value = encode_batch_texts("b", "p", 1, [body for _, body in recorder._queue])
        assert codec("UsageBatch").decode(value)["events"][0]["credits_micro"] == 0
    finally:
        with pytest.raises(NotDeliveredError):
            recorder.close(timeout=0.1)


class _Msg:
    def __init__(self, key: bytes, value: bytes | None) -> None:
        self._k, self._v = key, value

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def topic(self) -> str:
        return "t"

    def offset(self) -> int:
        return 0


def test_the_kafka_book_applies_tables_tombstones_and_skips_bad_records() -> None:
    doc = load()
    book = KafkaPriceBook.__new__(KafkaPriceBook)  # the reader's callback, without a consumer
    PriceBook.__init__(book)
    book.invalid = 0
    for t in doc["tables"]:
        book._apply(_Msg(t["record"]["account_id"].encode(), bytes.fromhex(t["hex"])))
    assert book.credits("acct-own", "gpt-4o", "text", 1_000, 500) == 600_000
    book._apply(_Msg(b"acct-own", None))  # its own table deleted: the platform's price now
    assert book.credits("acct-own", "gpt-4o", "text", 1_000, 500) == 7_500
    book._apply(_Msg(b"acct-x", b"garbage"))
    assert book.invalid == 1
