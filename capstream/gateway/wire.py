"""Validate usage events at the edge and Avro-encode them byte-identically to ``UsageBatch``.

``record()`` is on every bot reply's path, so validation and encoding are one pass over the
fields, and the pass builds a ``str`` of Latin-1 code units (one character per byte) rather
than ``bytes``: joining strings costs half what joining bytes does (no buffer protocol per
part), an ASCII id *is* its own UTF-8 encoding (no ``encode()`` call), and the sender turns a
whole batch into bytes with one ``encode("latin-1")``, a copy. Validated account, bot and
model strings are cached with their encoded form, counts come from tables (below 8192 one
lookup, below 2**20 two), and anything unusual (a non-ASCII id, an odd type, a bad value)
falls back to :func:`_encode_checked`, which checks every field and says which one is wrong.
The bytes equal ``codec("UsageBatch")``'s (tested); the record's framing and the Avro
primitives are :mod:`capstream.streams.usage_wire` and :mod:`capstream.streams.avro_bytes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import time_ns
from typing import Any

from capstream.core.limits import (
    DEFAULT_MAX_FUTURE_SKEW_MS,
    MAX_CREDITS_MICRO,
    MAX_ID,
    MAX_TOKENS,
    attributes_problem,
    event_problem,
)
from capstream.gateway.errors import UsageEventError
from capstream.streams.avro_bytes import long_bytes, string_bytes
from capstream.streams.usage_wire import BATCH_HEADER, CATEGORIES

MAX_LONG = (1 << 63) - 1
_CACHE_LIMIT = 100_000
_SMALL = 8192


def _units(raw: bytes) -> str:
    """Bytes as Latin-1 code units: one character per byte, ``.encode("latin-1")`` undoes it."""
    return raw.decode("latin-1")


# n -> Avro code units of n, for the non-negative numbers most fields hold.
_NUM: dict[int, str] = {n: _units(long_bytes(n)) for n in range(_SMALL)}
# The length prefix of an ASCII id (1 to MAX_ID characters, so as many bytes).
_ID_LEN: dict[int, str] = {n: _NUM[n] for n in range(1, MAX_ID + 1)}
_CATEGORY: dict[str, str] = {c: _NUM[i] for i, c in enumerate(CATEGORIES)}
_BOOL: dict[bool, str] = {False: "\x00", True: "\x01"}
# For larger counts (see _long_units): a byte as a character, with the continuation bit, and
# the first two varint bytes of any n >= 8192 by its low 13 bits (zigzag doubles n).
_CHR = tuple(map(chr, range(256)))
_CONT = tuple(chr(b | 0x80) for b in range(128))
_LOW13 = tuple(_CONT[(2 * n) & 0x7F] + _CONT[n >> 6] for n in range(1 << 13))
_EMPTY_MAP = "\x00"
# Validated strings -> their Avro code units. Ids must be non-empty; models may be empty.
_IDS: dict[str, str] = {}
_MODELS: dict[str, str] = {}
# The last explicit occurred_at_ms; the wall clock's current millisecond as [start, end) ns.
_last_time: tuple[int, str] = (-1, "")
_clock: tuple[int, int, str] = (0, 0, "")


def _tick(now_ns: int) -> tuple[int, int, str]:
    global _clock
    ms = now_ns // 1_000_000
    _clock = clock = (ms * 1_000_000, (ms + 1) * 1_000_000, _units(long_bytes(ms)))
    return clock


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
    return event_text(
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
    ).encode("latin-1")


def event_text(
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
) -> str:
    """:func:`encode_event` as Latin-1 code units (what the recorder queues)."""
    num = _NUM
    ids = _IDS
    try:
        if occurred_at_ms is None:
            now = time_ns()
            clock = _clock
            stamp = clock[2] if clock[0] <= now < clock[1] else _tick(now)[2]
        else:
            stamp = _stamp(occurred_at_ms)
        # An ASCII id is its own UTF-8; _ID_LEN refuses "" and more than MAX_ID.
        if not (
            event_id.__class__ is str
            and event_id.isascii()
            and conversation_id.__class__ is str
            and conversation_id.isascii()
        ):
            raise KeyError(event_id)
        return "".join(
            (
                _ID_LEN[len(event_id)],
                event_id,
                ids[account_id],
                ids[bot_id],
                _ID_LEN[len(conversation_id)],
                conversation_id,
                _CATEGORY[category],
                _MODELS[model],
                num[tokens_in]
                if tokens_in < _SMALL
                else _count_units("tokens_in", tokens_in, MAX_TOKENS),
                num[tokens_out]
                if tokens_out < _SMALL
                else _count_units("tokens_out", tokens_out, MAX_TOKENS),
                num[messages],
                _BOOL[conversation_started],
                num[credits_micro]
                if credits_micro < _SMALL
                else _count_units("credits_micro", credits_micro, MAX_CREDITS_MICRO),
                stamp,
                _EMPTY_MAP if not attributes else _units(_attributes(attributes)),
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
) -> str:
    """The other path: each field through its own check, the cheap one first, so a large
    count or a non-ASCII id costs a few calls more, and a bad field raises naming itself.
    Last, :func:`capstream.core.limits.event_problem` (the rules the worker and the sink
    apply) sees the whole event."""
    if category.__class__ is not str or category not in _CATEGORY:
        category = _category(category)
    if conversation_started not in (True, False) or isinstance(conversation_started, str):
        raise UsageEventError(
            "conversation_started", f"must be True or False, not {conversation_started!r}"
        )
    eid = _text("event_id", event_id, required=True)
    account = _text("account_id", account_id, required=True)
    bot = _text("bot_id", bot_id, required=True)
    conversation = _text("conversation_id", conversation_id, required=True)
    model_name = _text("model", model, required=False)
    t_in = _count("tokens_in", tokens_in, MAX_LONG)
    t_out = _count("tokens_out", tokens_out, MAX_LONG)
    n_messages = _count("messages", messages, MAX_LONG)
    credits = _count("credits_micro", credits_micro, MAX_LONG)
    stamp = _stamp(occurred_at_ms) if occurred_at_ms is not None else _now_stamp()
    attrs = _units(_attributes(attributes)) if attributes else _EMPTY_MAP
    problem = event_problem(
        eid, account, bot, conversation, model_name, t_in, t_out, n_messages, credits,
        _last_time[0] if occurred_at_ms is not None else _clock[0] // 1_000_000,
        None, MAX_LONG,
    )  # fmt: skip
    if problem is not None:
        raise UsageEventError(problem.field, problem.message)
    return "".join(
        (
            _id_units("event_id", eid),
            _known(_IDS, "account_id", account, required=True),
            _known(_IDS, "bot_id", bot, required=True),
            _id_units("conversation_id", conversation),
            _CATEGORY[category],
            _known(_MODELS, "model", model_name, required=False),
            _long_units(t_in),
            _long_units(t_out),
            _long_units(n_messages),
            _BOOL[bool(conversation_started)],
            _long_units(credits),
            stamp,
            attrs,
        )
    )


def _now_stamp() -> str:
    now = time_ns()
    clock = _clock
    return clock[2] if clock[0] <= now < clock[1] else _tick(now)[2]


def _stamp(occurred_at_ms: Any) -> str:
    """An explicit ``occurred_at_ms`` as code units (the last one is kept: callers that pass
    their own clock repeat it within a millisecond)."""
    global _last_time
    last = _last_time
    if occurred_at_ms.__class__ is not int or last[0] != occurred_at_ms:
        if isinstance(occurred_at_ms, bool) or not isinstance(occurred_at_ms, int):
            raise UsageEventError(
                "occurred_at_ms", f"must be epoch milliseconds (an int), not {occurred_at_ms!r}"
            )
        t = int(occurred_at_ms)
        problem = event_problem(
            "e", "a", "b", "c", "", 0, 0, 0, 0, t, None,
            time_ns() // 1_000_000 + DEFAULT_MAX_FUTURE_SKEW_MS,
        )  # fmt: skip
        if problem is not None:
            raise UsageEventError(problem.field, problem.message)
        last = _last_time = (t, _long_units(t))
    return last[1]


def _category(category: Any) -> str:
    try:
        if category in _CATEGORY:
            return str(category)
    except TypeError:  # unhashable
        pass
    raise UsageEventError("category", f"must be one of {', '.join(CATEGORIES)}, not {category!r}")


def _id_units(name: str, value: Any) -> str:
    if value.__class__ is str and value.isascii():
        prefix = _ID_LEN.get(len(value))
        if prefix is not None:
            return prefix + value
    return _units(string_bytes(_text(name, value, required=True)))


def _known(cache: dict[str, str], name: str, value: Any, *, required: bool) -> str:
    if value.__class__ is str:
        units = cache.get(value)
        if units is not None:
            return units
    return _remember(cache, _text(name, value, required=required))


def _count_units(name: str, value: Any, limit: int = MAX_LONG) -> str:
    if value.__class__ is int:
        if _SMALL <= value < 1 << 20:  # most counts the fast path sends here (one call less)
            return _LOW13[value & 0x1FFF] + _CHR[value >> 13]
        if 0 <= value <= limit:
            return _long_units(value)
    return _long_units(_count(name, value, limit))


def _long_units(n: int) -> str:
    """Avro ``long`` of ``n >= 0`` as code units: tables up to 2**27, arithmetic beyond."""
    if n < _SMALL:
        return _NUM[n]
    if n < 1 << 20:  # the low 13 bits give the first two bytes, the rest the third
        return _LOW13[n & 0x1FFF] + _CHR[n >> 13]
    if n < 1 << 27:
        return _LOW13[n & 0x1FFF] + _CONT[n >> 13 & 0x7F] + _CHR[n >> 20]
    return _units(long_bytes(n))


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


def _remember(cache: dict[str, str], value: str) -> str:
    encoded = cache.get(value)
    if encoded is None:
        encoded = _units(string_bytes(value))
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
    parts.append(b"\x00")
    problem = attributes_problem(dict(attributes))
    if problem is not None:
        raise UsageEventError(problem.field, problem.message)
    return b"".join(parts)


_BATCH_HEADER_UNITS = _units(BATCH_HEADER)


def encode_batch_texts(batch_id: str, producer: str, sent_at_ms: int, texts: list[str]) -> bytes:
    """``capstream.streams.usage_wire.encode_batch`` of bodies from :func:`event_text`: one
    join, one Latin-1 copy."""
    return "".join(
        (
            _BATCH_HEADER_UNITS,
            _units(string_bytes(batch_id)),
            _units(string_bytes(producer)),
            _units(long_bytes(sent_at_ms)),
            _units(long_bytes(len(texts))) if texts else "",
            *texts,
            "\x00",
        )
    ).encode("latin-1")
