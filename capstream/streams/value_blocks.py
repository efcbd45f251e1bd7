"""The value-blocks topic: an attribute value (end user, API key, team, model) blocked by a
per-attribute policy, published by the processors for gateways to refuse that value.

Compacted, keyed ``account_id/bot_id/attribute/value`` (the value last: it may hold ``/``);
the latest record of a key wins (the outbox keeps a key's records in order, as control
states). No tombstone is written when a block ends: the record says when it ends and readers
ignore a block whose end has passed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from capstream.core.models import ValueBlock
from capstream.errors import DecodeError
from capstream.streams.codecs import codec
from capstream.streams.records import EpochMs, Id, WireRecord


class ValueBlockRecord(WireRecord):
    """The wire record of a :class:`~capstream.core.models.ValueBlock`."""

    schema_name: ClassVar[str] = "ValueBlock"

    account_id: Id
    bot_id: Id
    attribute: Id
    value: Id
    blocked_until_ms: EpochMs
    policy_id: Id


def value_block_key(account_id: str, bot_id: str, attribute: str, value: str) -> bytes:
    """The topic key of one value's block: ``account_id/bot_id/attribute/value``."""
    return f"{account_id}/{bot_id}/{attribute}/{value}".encode()


def encode_value_block(block: ValueBlock) -> bytes:
    """The value-blocks topic value (Avro single-object ``ValueBlock``)."""
    return codec("ValueBlock").encode(
        {
            "account_id": block.account_id,
            "bot_id": block.bot_id,
            "attribute": block.attribute,
            "value": block.value,
            "blocked_until_ms": block.blocked_until_ms,
            "policy_id": block.policy_id,
        }
    )


def decode_value_block(data: bytes) -> ValueBlock:
    """Decode a value-blocks topic value; raises ``DecodeError`` (reason ``invalid`` for a
    record with an empty id or attribute, or a negative end)."""
    r: dict[str, Any] = codec("ValueBlock").decode(data)
    try:
        block = ValueBlock(
            r["account_id"], r["bot_id"], r["attribute"], r["value"],
            r["blocked_until_ms"], r["policy_id"],
        )  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise DecodeError(f"malformed ValueBlock: {exc}", reason="invalid") from exc
    if not (block.account_id and block.bot_id and block.attribute and block.value):
        raise DecodeError(
            "a ValueBlock needs an account_id, a bot_id, an attribute and a value",
            reason="invalid",
        )
    if block.blocked_until_ms < 0:
        raise DecodeError("a ValueBlock's blocked_until_ms is negative", reason="invalid")
    return block
