"""Avro codecs with single-object encoding (a fingerprint header instead of a registry)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from capstream.errors import DecodeError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
NAMESPACE = "io.capstream"
MAGIC = b"\xc3\x01"
_HEADER = len(MAGIC) + 8

# Load order: a schema must come after the named types it refers to.
_ORDER = (
    "Category",
    "CapPeriod",
    "UsageEvent",
    "UsageBatch",
    "CapStatus",
    "EnforcementState",
    "Policy",
    "TenantSettings",
    "Notification",
    "CapHit",
    "FeedRow",
    "DeadLetter",
    "ConversationSent",
    "BotResume",
    "Channel",
    "DeliveryAttempt",
    "CapGrant",
    "PriceTable",
    "ValueBlock",
)

Record = dict[str, Any]


def fingerprint_of(parsed: Any) -> bytes:
    """The CRC-64-AVRO fingerprint (little-endian bytes) of a parsed schema."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@cache
def _named_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    named: dict[str, Any] = {}
    parsed: dict[str, Any] = {}
    for name in _ORDER:
        raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
        parsed[name] = fastavro.parse_schema(raw, named_schemas=named)
    return parsed, named


def schema(name: str) -> Any:
    """The parsed schema ``io.capstream.<name>`` from ``schemas/<name>.avsc``."""
    parsed, _ = _named_schemas()
    try:
        return parsed[name]
    except KeyError:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(_ORDER)}") from None


class Codec:
    """Encodes records of one schema and decodes any known writer version of it.

    ``encode`` writes the Avro single-object encoding: ``C3 01``, the writer schema's
    CRC-64-AVRO fingerprint (little-endian), then the Avro binary body. ``decode`` looks the
    fingerprint up among the registered writer schemas and resolves to the reader schema, so
    readers with a newer schema (fields added with defaults) read old records.
    """

    def __init__(self, name: str, *, writers: Iterable[dict[str, Any]] = ()) -> None:
        self.name = name
        self.reader = schema(name)
        self.fingerprint = fingerprint_of(self.reader)
        self._writers: dict[bytes, Any] = {self.fingerprint: self.reader}
        for writer in writers:
            self.register_writer(writer)

    def register_writer(self, writer_schema: dict[str, Any]) -> bytes:
        """Accept records written with an older or newer version of this schema."""
        _, named = _named_schemas()
        parsed = fastavro.parse_schema(writer_schema, named_schemas=dict(named))
        fp = fingerprint_of(parsed)
        self._writers[fp] = parsed
        return fp

    def encode(self, record: Record) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(self.fingerprint)
        try:
            fastavro.schemaless_writer(buf, self.reader, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DecodeError(f"cannot encode a {self.name}: {exc}", reason="unencodable") from exc
        return buf.getvalue()

    def decode(self, data: bytes | None) -> Record:
        if not data:
            raise DecodeError(
                f"empty bytes where a {self.name} record was expected", reason="empty"
            )
        if data[:2] != MAGIC or len(data) < _HEADER:
            raise DecodeError(
                f"not an Avro single-object {self.name}: the first bytes are {data[:4]!r}, "
                "expected C3 01 and a schema fingerprint",
                reason="not_avro",
            )
        fp = bytes(data[2:_HEADER])
        writer = self._writers.get(fp)
        if writer is None:
            raise DecodeError(
                f"unknown schema fingerprint {fp.hex()} for a {self.name}: it was written with a "
                "schema this reader does not know (register it with Codec.register_writer)",
                reason="unknown_schema",
            )
        try:
            record = fastavro.schemaless_reader(io.BytesIO(data[_HEADER:]), writer, self.reader)
        except Exception as exc:  # fastavro raises many types on truncated/garbled bodies
            raise DecodeError(
                f"corrupt {self.name} body ({type(exc).__name__}: {exc})", reason="corrupt"
            ) from exc
        if not isinstance(record, dict):
            raise DecodeError(f"a {self.name} body decoded to {type(record).__name__}")
        return record


@cache
def codec(name: str) -> Codec:
    """The shared codec for schema ``name``; it also reads records written with the earlier
    versions kept in ``schemas/history/<name>.<n>.avsc`` (records still in the topics when
    a field was added)."""
    history = sorted((SCHEMA_DIR / "history").glob(f"{name}.*.avsc"))
    return Codec(name, writers=[json.loads(p.read_text()) for p in history])
