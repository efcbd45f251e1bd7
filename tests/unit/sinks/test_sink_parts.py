"""Dead letters, options and error classification of the sink."""

from __future__ import annotations

import pytest
from sink_fakes import FakeProducer

from capstream.errors import ConfigError
from capstream.sinks.dead_letters import DeadLetters
from capstream.sinks.options import SinkOptions
from capstream.sinks.store import (
    RowsRejectedError,
    StoreUnavailableError,
    _redacted,
    classify,
    short_error,
)


def test_dead_letters_carry_the_raw_bytes_and_source_and_survive_failed_deliveries() -> None:
    producer = FakeProducer()
    letters = DeadLetters(producer)
    producer.fail = True
    letters.send("p.usage", 2, 41, b"acct", b"\x00raw", reason="not_avro", error="bad bytes")
    assert not letters.flush(timeout=0.05)
    assert letters.pending == 1 and letters.delivery_errors >= 1
    producer.fail = False
    assert letters.flush(timeout=1)
    [(topic, _, key)] = producer.sent
    [record] = producer.dead_letters()
    assert (topic, key) == ("p.usage.dlq", b"acct")
    assert (record.source_topic, record.partition, record.offset) == ("p.usage", 2, 41)
    assert (record.reason, record.error, record.raw_value) == ("not_avro", "bad bytes", b"\x00raw")
    assert letters.counts == {("p.usage", "not_avro"): 1}


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_bytes": 10},
        {"flush_interval_s": 0},
        {"batch_bytes": 4096, "max_buffered_bytes": 4096},
        {"retry_initial_s": 5, "retry_max_s": 1},
        {"retention_days": -1},
    ],
)
def test_bad_options_are_refused_naming_the_option(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        SinkOptions(**bad)  # type: ignore[arg-type]


def test_options_default_group_follows_the_prefix() -> None:
    assert SinkOptions().group("acme") == "acme.sink"
    assert SinkOptions(group_id="g").group("acme") == "g"


def test_data_errors_are_rejections_and_everything_else_is_retried() -> None:
    rejected = classify(RuntimeError("Code: 469. DB::Exception: Constraint `x` is violated"))
    assert isinstance(rejected, RowsRejectedError)
    assert isinstance(classify(RuntimeError("Code: 1001. avro::Exception EOF")), RowsRejectedError)
    down = classify(ConnectionError("Connection refused"))
    assert isinstance(down, StoreUnavailableError) and "Connection refused" in str(down)
    assert isinstance(
        classify(RuntimeError("Code: 241. MEMORY_LIMIT_EXCEEDED")), StoreUnavailableError
    )


def test_errors_are_shortened_and_passwords_redacted() -> None:
    assert short_error(RuntimeError("first line\nstack\nmore")) == "first line"
    assert len(short_error(RuntimeError("x" * 1000), 50)) == 50
    assert _redacted("https://u:s3cret@ch:8443/db") == "https://u:***@ch:8443/db"
    assert _redacted("chdb:///data/clickhouse") == "chdb:///data/clickhouse"
