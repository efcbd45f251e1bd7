"""Record values become Avro container files that any Avro reader (and ClickHouse) reads."""

from __future__ import annotations

import io
import json

import fastavro
import pytest
from sink_fakes import usage_value

from capstream.errors import DecodeError
from capstream.sinks.frames import ContainerWriter, body_of, standalone_schema
from capstream.streams.avro_bytes import long_bytes
from capstream.streams.codecs import Codec, codec
from capstream.streams.records import CapHitRecord, UsageBatchRecord


def test_the_frame_longs_match_avro_longs() -> None:
    for n in (0, -1, 1, 63, -64, 64, 300, -(2**40), 2**62):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, {"type": "long"}, n)
        assert long_bytes(n) == buf.getvalue()


def test_standalone_schemas_parse_without_any_other_schema() -> None:
    for name in ("UsageBatch", "EnforcementState", "CapHit", "Notification", "FeedRow"):
        parsed = fastavro.parse_schema(json.loads(standalone_schema(name)))
        assert parsed["name"] == f"io.capstream.{name}"


def test_a_container_of_bodies_reads_back_as_the_records() -> None:
    values = [usage_value(n, events=n % 3 + 1) for n in range(5)]
    data = ContainerWriter("UsageBatch").container(
        [body_of(v, codec("UsageBatch")) for v in values]
    )
    read = list(fastavro.reader(io.BytesIO(data)))
    assert read == [codec("UsageBatch").decode(v) for v in values]
    assert [UsageBatchRecord.model_validate(r).batch_id for r in read] == [
        f"b{n}" for n in range(5)
    ]


def test_records_of_another_writer_schema_are_re_encoded_to_the_current_one() -> None:
    older = json.loads(standalone_schema("CapHit"))
    older["fields"].append({"name": "legacy", "type": "string", "default": ""})
    reader = Codec("CapHit")
    fingerprint = reader.register_writer(older)
    hit = CapHitRecord(
        hit_id="h",
        account_id="a",
        bot_id="b",
        conversation_id="c",
        category="text",
        period="daily",
        period_key="2026-11-22",
        occurred_at_ms=5,
    ).model_dump()
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fingerprint)
    fastavro.schemaless_writer(buf, fastavro.parse_schema(older), {**hit, "legacy": "x"})
    body = body_of(buf.getvalue(), reader)
    assert fastavro.schemaless_reader(io.BytesIO(bytes(body)), reader.reader, None) == hit


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"{json}", "not_avro"),
        (b"\xc3\x01" + b"\1" * 9, "unknown_schema"),
    ],
)
def test_bad_values_raise_decode_errors_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        body_of(value, codec("UsageBatch"))
    assert err.value.reason == reason
