"""Kafka record values to Avro object container bytes that ClickHouse decodes itself.

A capstream record value is ``C3 01`` + an 8-byte schema fingerprint + an Avro body. The
sink does not decode bodies in Python (fastavro costs 10-15 µs per usage event on this
machine, ClickHouse's Avro reader a fraction of that): it checks the header, keeps the body,
and frames many bodies as one Avro object container file (``FORMAT Avro``). Each record is
its own container block, so a corrupt body fails alone instead of shifting its neighbours.
Records written with an older registered schema are resolved by ``Codec.decode`` and
re-encoded with the current one, so ClickHouse only ever sees the current schema.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cache
from typing import Any

from capstream.errors import DecodeError
from capstream.streams.avro_bytes import long_bytes
from capstream.streams.codecs import MAGIC, SCHEMA_DIR, Codec

HEADER_LEN = len(MAGIC) + 8
Body = bytes | memoryview


def _avro_bytes(data: bytes) -> bytes:
    return long_bytes(len(data)) + data


@cache
def _raw_schemas() -> dict[str, dict[str, Any]]:
    raw: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        doc = json.loads(path.read_text())
        raw[f"{doc.get('namespace', '')}.{doc['name']}"] = doc
    return raw


def _inline(node: Any, namespace: str, defined: set[str]) -> Any:
    """Replace references to named types by their definition (first use only)."""
    raw = _raw_schemas()
    if isinstance(node, str):
        full = node if "." in node else f"{namespace}.{node}"
        if full in raw and full not in defined:
            defined.add(full)
            return _inline(raw[full], namespace, defined)
        return node
    if isinstance(node, list):
        return [_inline(item, namespace, defined) for item in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    kind = node.get("type")
    if kind == "record":
        ns = node.get("namespace", namespace)
        defined.add(node["name"] if "." in node["name"] else f"{ns}.{node['name']}")
        out["fields"] = [
            {**field, "type": _inline(field["type"], ns, defined)} for field in node["fields"]
        ]
    elif kind == "array":
        out["items"] = _inline(node["items"], namespace, defined)
    elif kind == "map":
        out["values"] = _inline(node["values"], namespace, defined)
    elif isinstance(kind, dict | list):
        out["type"] = _inline(kind, namespace, defined)
    return out


@cache
def standalone_schema(name: str) -> str:
    """The JSON of schema ``name`` with every named type defined inline (for OCF headers)."""
    full = f"io.capstream.{name}"
    doc = _raw_schemas().get(full)
    if doc is None:
        raise KeyError(f"no schema named {name!r} in {SCHEMA_DIR}")
    return json.dumps(_inline(full, "io.capstream", set()), separators=(",", ":"))


class ContainerWriter:
    """Frames Avro bodies of one schema as an object container file, one block each."""

    def __init__(self, schema_name: str) -> None:
        self.schema_name = schema_name
        self._sync = os.urandom(16)
        meta = {b"avro.schema": standalone_schema(schema_name).encode(), b"avro.codec": b"null"}
        header = bytearray(b"Obj\x01")
        header += long_bytes(len(meta))
        for key, value in meta.items():
            header += _avro_bytes(key) + _avro_bytes(value)
        header += long_bytes(0) + self._sync
        self._header = bytes(header)
        self._one = long_bytes(1)

    def container(self, bodies: Sequence[Body]) -> bytes:
        """One OCF file holding ``bodies`` (each a serialized datum of this schema)."""
        parts: list[Body] = [self._header]
        one, sync = self._one, self._sync
        for body in bodies:
            parts.append(one)
            parts.append(long_bytes(len(body)))
            parts.append(body)
            parts.append(sync)
        return b"".join(parts)


def body_of(value: bytes | None, record_codec: Codec) -> Body:
    """The current-schema Avro body of a record value, or ``DecodeError`` saying why not.

    Values written with the reader's own schema are sliced without copying; values written
    with another registered writer schema are resolved and re-encoded.
    """
    if not value:
        raise DecodeError(
            f"empty bytes where a {record_codec.name} record was expected", reason="empty"
        )
    if value[:2] != MAGIC or len(value) < HEADER_LEN:
        raise DecodeError(
            f"not an Avro single-object {record_codec.name}: the first bytes are {value[:4]!r}",
            reason="not_avro",
        )
    if value[2:HEADER_LEN] == record_codec.fingerprint:
        return memoryview(value)[HEADER_LEN:]
    # Another writer version (or an unknown one: decode raises the right DecodeError).
    return record_codec.encode(record_codec.decode(value))[HEADER_LEN:]
