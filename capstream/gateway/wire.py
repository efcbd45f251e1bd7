"""Validate usage events at the edge and Avro-encode them byte-identically to ``UsageBatch``.

``record()`` is on every bot reply's path, so validation and encoding are one pass over the
fields: validated strings are cached with their encoded bytes, small numbers come from a
table, and anything unusual falls back to :func:`_encode_checked`, which checks every field
and says which one is wrong. The bytes equal ``codec("UsageBatch")``'s (tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from time import time_ns
from typing import Any

from capstream.gateway.errors import UsageEventError
from capstream.streams.codecs import MAGIC, codec

CATEGORIES = ("text", "vision", "audio", "documents")
MAX_ID = 200
MAX_LONG = (1 << 63) - 1
MAX_INT = (1 << 31) - 1
_CACHE_LIMIT = 100_000
_SMALL = 8192


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 127:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def long_bytes(n: int) -> bytes:
    """Avro ``long``/``int``: zigzag, then a base-128 varint."""
    return _varint((n << 1) ^ (n >> 63))


def string_bytes(s: str) -> bytes:
    """Avro ``string``: the UTF-8 length as a long, then the bytes."""
    raw = s.encode()
    return long_bytes(len(raw)) + raw


# n -> Avro bytes of n, for the non-negative numbers most fields hold.
_NUM: dict[int, bytes] = {n: long_bytes(n) for n in range(_SMALL)}
_CATEGORY: dict[str, bytes] = {c: long_bytes(i) for i, c in enumerate(CATEGORIES)}
_BOOL: dict[bool, bytes] = {False: b"\x00", True: b"\x01"}
_EMPTY_MAP = b"\x00"
# Validated strings -> their Avro bytes. Ids must be non-empty; models may be empty.
_IDS: dict[str, bytes] = {}
_MODELS: dict[str, bytes] = {}
_last_time: tuple[int, bytes] = (-1, b"")


def encode_event(
    event_id: Any,
    account_id: Any,
    bot_id: Any,
    conversation_id: Any,
    category: Any,
    model: Any,
    tokens_in: Any,
    tokens_out: Any,
    messages: Any,
    conversation_started: Any,
    credits_micro: Any,
    occurred_at_ms: Any,
    attributes: Any,
) -> bytes:
    """The Avro body of one ``UsageEvent``; raises :class:`UsageEventError` naming the field."""
    global _last_time
    ids = _IDS
    num = _NUM
    try:
        if event_id.__class__ is not str or not 0 < len(event_id) <= MAX_ID:
            raise KeyError(event_id)
        raw = event_id.encode()
        if occurred_at_ms is None:
            occurred_at_ms = time_ns() // 1_000_000
        last = _last_time
        if last[0] != occurred_at_ms or occurred_at_ms.__class__ is not int:
            if occurred_at_ms.__class__ is not int or not 0 <= occurred_at_ms <= MAX_LONG:
                raise KeyError(occurred_at_ms)
            last = _last_time = (occurred_at_ms, long_bytes(occurred_at_ms))
        return b"".join(
            (
                num[len(raw)],
                raw,
                ids[account_id],
                ids[bot_id],
                ids[conversation_id],
                _CATEGORY[category],
                _MODELS[model],
                num[tokens_in],
                num[tokens_out],
                num[messages],
                _BOOL[conversation_started],
                num[credits_micro],
                last[1],
                _EMPTY_MAP if not attributes else _attributes(attributes),
            )
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return _encode_checked(
            event_id,
            account_id,
            bot_id,
            conversation_id,
            category,
            model,
            tokens_in,
            tokens_out,
            messages,
            conversation_started,
            credits_micro,
            occurred_at_ms,
            attributes,
        )


def _encode_checked(
    event_id: Any,
    account_id: Any,
    bot_id: Any,
    conversation_id: Any,
    category: Any,
    model: Any,
    tokens_in: Any,
    tokens_out: Any,
    messages: Any,
    conversation_started: Any,
    credits_micro: Any,
    occurred_at_ms: Any,
    attributes: Any,
) -> bytes:
    """The slow path: check every field, say which is wrong, remember the strings."""
    parts = [string_bytes(_text("event_id", event_id, required=True))]
    for name, value in (
        ("account_id", account_id),
        ("bot_id", bot_id),
        ("conversation_id", conversation_id),
    ):
        parts.append(_remember(_IDS, _text(name, value, required=True)))
    if category not in _CATEGORY:
        raise UsageEventError(
            "category", f"must be one of {', '.join(CATEGORIES)}, not {category!r}"
        )
    parts.append(_CATEGORY[category])
    parts.append(_remember(_MODELS, _text("model", model, required=False)))
    parts.append(long_bytes(_count("tokens_in", tokens_in, MAX_LONG)))
    parts.append(long_bytes(_count("tokens_out", tokens_out, MAX_LONG)))
    parts.append(long_bytes(_count("messages", messages, MAX_INT)))
    if conversation_started not in (True, False) or isinstance(conversation_started, str):
        raise UsageEventError(
            "conversation_started", f"must be True or False, not {conversation_started!r}"
        )
    parts.append(_BOOL[bool(conversation_started)])
    parts.append(long_bytes(_count("credits_micro", credits_micro, MAX_LONG)))
    if occurred_at_ms is None:
        occurred_at_ms = time_ns() // 1_000_000
    if isinstance(occurred_at_ms, bool) or not isinstance(occurred_at_ms, int):
        raise UsageEventError(
            "occurred_at_ms", f"must be epoch milliseconds (an int), not {occurred_at_ms!r}"
        )
    parts.append(long_bytes(_count("occurred_at_ms", occurred_at_ms, MAX_LONG)))
    parts.append(_attributes(attributes) if attributes else _EMPTY_MAP)
    return b"".join(parts)


def _text(name: str, value: Any, *, required: bool) -> str:
    if value is None and required:
        raise UsageEventError(name, "is required (a non-empty string)")
    if not isinstance(value, str):
        raise UsageEventError(name, f"must be a string, not {type(value).__name__}")
    if required and not value:
        raise UsageEventError(name, "is required and cannot be empty")
    if len(value) > MAX_ID:
        raise UsageEventError(name, f"is {len(value)} characters; the limit is {MAX_ID}")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise UsageEventError(name, f"is not valid text ({exc.reason})") from exc
    return value


def _count(name: str, value: Any, limit: int) -> int:
    # Like the wire model (pydantic, lax): True counts as 1 and 2.0 as 2, but 2.5 is refused.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise UsageEventError(name, f"must be a whole number, not {value!r}")
    number = int(value)  # True -> 1
    if number < 0:
        raise UsageEventError(name, f"cannot be negative (got {number})")
    if number > limit:
        raise UsageEventError(name, f"{number} is larger than the limit {limit}")
    return number


def _remember(cache: dict[str, bytes], value: str) -> bytes:
    encoded = cache.get(value)
    if encoded is None:
        encoded = string_bytes(value)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[value] = encoded
    return encoded


def _attributes(attributes: Any) -> bytes:
    if not isinstance(attributes, Mapping):
        raise UsageEventError(
            "attributes", f"must be a dict of strings, not {type(attributes).__name__}"
        )
    parts = [long_bytes(len(attributes))]
    for key, value in attributes.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageEventError("attributes", f"keys and values must be strings: {key!r}")
        parts.append(string_bytes(key))
        parts.append(string_bytes(value))
    parts.append(_EMPTY_MAP)
    return b"".join(parts)


_BATCH_HEADER = MAGIC + codec("UsageBatch").fingerprint


def encode_batch(batch_id: str, producer: str, sent_at_ms: int, bodies: list[bytes]) -> bytes:
    """A ``UsageBatch`` record (single-object encoding) holding the encoded event bodies."""
    return b"".join(
        (
            _BATCH_HEADER,
            string_bytes(batch_id),
            string_bytes(producer),
            long_bytes(sent_at_ms),
            long_bytes(len(bodies)) if bodies else b"",
            *bodies,
            b"\x00",
        )
    )
