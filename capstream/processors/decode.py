"""Usage and cap-hit records -> core objects, fast, with a DLQ reason for everything refused.

A ``UsageBatch`` (Avro single-object encoding) is read by a hand-written decoder for the
current schema (about twice as fast as fastavro plus building the events); records written
with another registered schema version go through the generic codec. Record-level failures
(too large, not Avro, unknown schema, corrupt body) raise ``DecodeError``; event-level ones
(missing ids, negative amounts, timestamps too far in the future) refuse only that event:
it comes back as a :class:`BadEvent` holding its own bytes wrapped as a one-event batch, so a
dead letter can be re-driven without replaying its neighbours.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from capstream.core.models import CapHit, UsageEvent
from capstream.errors import DecodeError
from capstream.gateway.wire import encode_batch
from capstream.streams.codecs import MAGIC, codec

CATEGORIES = ("text", "vision", "audio", "documents")
PERIODS = ("daily", "monthly")
MAX_ID = 200
_HEADER = 10
_STRINGS_LIMIT = 200_000


class BadEvent(NamedTuple):
    """An event refused inside an otherwise good record."""

    position: int
    """The event's place in its record."""
    reason: str
    error: str
    raw: bytes
    """The event's own Avro body wrapped as a one-event ``UsageBatch``."""


class Decoded(NamedTuple):
    """What one usage record holds: the good events, their places in the record, the bad."""

    events: list[UsageEvent]
    indexes: list[int] | None
    """Each good event's place in the record; None when it equals its place in ``events``."""
    bad: list[BadEvent]


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro zigzag varint at ``pos``: (value, next position)."""
    b = data[pos]
    pos += 1
    r = b & 0x7F
    shift = 7
    while b & 0x80:
        b = data[pos]
        pos += 1
        r |= (b & 0x7F) << shift
        shift += 7
    return (r >> 1) ^ -(r & 1), pos


def _string(data: bytes, pos: int) -> tuple[str, int]:
    """Avro string at ``pos``: (text, next position); IndexError if it overruns the record."""
    ln, pos = _long(data, pos)
    end = pos + ln
    if ln < 0 or end > len(data):
        raise IndexError
    return data[pos:end].decode(), end


def _cached(data: bytes, pos: int, strings: dict[bytes, str]) -> tuple[str, int]:
    """:func:`_string`, decoded once per distinct value (ids and models repeat)."""
    ln, pos = _long(data, pos)
    end = pos + ln
    if ln < 0 or end > len(data):
        raise IndexError
    raw = data[pos:end]
    s = strings.get(raw)
    if s is None:
        s = strings[raw] = raw.decode()
    return s, end


class UsageDecoder:
    """Decodes ``UsageBatch`` records and validates each event; keeps a cache of id strings."""

    def __init__(self, max_record_bytes: int) -> None:
        self.max_record_bytes = max_record_bytes
        self._codec = codec("UsageBatch")
        self._header = MAGIC + self._codec.fingerprint
        self._strings: dict[bytes, str] = {}

    def decode(self, value: bytes | None, max_occurred_at_ms: int) -> Decoded:
        """The events of one record; raises ``DecodeError`` if the record as a whole is bad."""
        if value is None or not value:
            raise DecodeError("empty usage record (a tombstone or no bytes)", reason="empty")
        if len(value) > self.max_record_bytes:
            raise DecodeError(
                f"usage record of {len(value):,} bytes is larger than the limit "
                f"{self.max_record_bytes:,}; split batches at the producer",
                reason="too_large",
            )
        if value[:_HEADER] != self._header:
            return self._generic(value, max_occurred_at_ms)
        try:
            decoded, end = self._fast(value, max_occurred_at_ms)
        except (IndexError, UnicodeDecodeError, ValueError):
            return self._generic(value, max_occurred_at_ms)  # says precisely what is wrong
        if end != len(value):
            raise DecodeError(
                f"corrupt UsageBatch: {len(value) - end} bytes after the last event",
                reason="corrupt",
            )
        return decoded

    def _fast(self, data: bytes, max_t: int) -> tuple[Decoded, int]:
        strings = self._strings
        if len(strings) > _STRINGS_LIMIT:
            strings.clear()
        events: list[UsageEvent] = []
        append = events.append
        bad: list[BadEvent] = []
        indexes: list[int] | None = None
        pos = _HEADER
        batch_id, pos = _string(data, pos)
        producer, pos = _string(data, pos)
        sent_at, pos = _long(data, pos)
        index = 0
        while True:
            count, pos = _long(data, pos)
            if count == 0:
                break
            if count < 0:
                count = -count
                _, pos = _long(data, pos)  # block size in bytes
            for _ in range(count):
                # Numbers have inlined fast paths for one and two bytes (the common case);
                # strings are checked against the record's end; a truncated number raises
                # IndexError. Ids and models are interned in a cache of decoded strings.
                start = pos
                eid, pos = _string(data, pos)
                acct, pos = _cached(data, pos, strings)
                bot, pos = _cached(data, pos, strings)
                conv, pos = _cached(data, pos, strings)
                cat_index = data[pos] >> 1
                if data[pos] & 1 or cat_index >= 4:
                    raise ValueError
                pos += 1
                model, pos = _cached(data, pos, strings)
                b = data[pos]  # tokens_in
                if b < 0x80:
                    tokens_in = (b >> 1) ^ -(b & 1)
                    pos += 1
                elif data[pos + 1] < 0x80:
                    v = (b & 0x7F) | (data[pos + 1] << 7)
                    tokens_in = (v >> 1) ^ -(v & 1)
                    pos += 2
                else:
                    tokens_in, pos = _long(data, pos)
                b = data[pos]  # tokens_out
                if b < 0x80:
                    tokens_out = (b >> 1) ^ -(b & 1)
                    pos += 1
                elif data[pos + 1] < 0x80:
                    v = (b & 0x7F) | (data[pos + 1] << 7)
                    tokens_out = (v >> 1) ^ -(v & 1)
                    pos += 2
                else:
                    tokens_out, pos = _long(data, pos)
                b = data[pos]  # messages
                if b < 0x80:
                    messages = (b >> 1) ^ -(b & 1)
                    pos += 1
                else:
                    messages, pos = _long(data, pos)
                flag = data[pos]
                if flag > 1:
                    raise ValueError
                pos += 1
                # credits_micro and occurred_at_ms: multi-byte varints, read in one loop each
                b = data[pos]
                v = b & 0x7F
                shift = 7
                pos += 1
                while b & 0x80:
                    b = data[pos]
                    pos += 1
                    v |= (b & 0x7F) << shift
                    shift += 7
                credits = (v >> 1) ^ -(v & 1)
                b = data[pos]
                v = b & 0x7F
                shift = 7
                pos += 1
                while b & 0x80:
                    b = data[pos]
                    pos += 1
                    v |= (b & 0x7F) << shift
                    shift += 7
                t = (v >> 1) ^ -(v & 1)
                if data[pos] == 0:
                    attrs: dict[str, str] = {}
                    pos += 1
                else:
                    attrs = {}
                    pos = _read_map(data, pos, attrs)
                problem = None
                if not (eid and acct and bot and conv):
                    problem = ("missing_id", "event_id, account_id, bot_id and conversation_id "
                               "must be non-empty")  # fmt: skip
                elif (tokens_in | tokens_out | messages | credits) < 0:
                    problem = ("negative_amount", "tokens, messages and credits cannot be negative")
                elif t > max_t or t < 0:
                    reason = "future_timestamp" if t > 0 else "invalid"
                    problem = (reason, f"occurred_at_ms {t} is outside [0, {max_t}] (now + skew)")
                elif (
                    len(eid) > MAX_ID
                    or len(acct) > MAX_ID
                    or len(bot) > MAX_ID
                    or (len(conv) > MAX_ID)
                ):
                    problem = ("invalid", f"an id is longer than {MAX_ID} characters")
                if problem is None:
                    append(
                        UsageEvent(eid, acct, bot, conv, CATEGORIES[cat_index], model, tokens_in,
                                   tokens_out, messages, flag == 1, credits, t, attrs)
                    )  # fmt: skip
                    if indexes is not None:
                        indexes.append(index)
                else:
                    if indexes is None:
                        indexes = list(range(len(events)))
                    wrapped = encode_batch(batch_id, producer, sent_at, [data[start:pos]])
                    bad.append(
                        BadEvent(index, problem[0], f"event {index} ({eid!r}): {problem[1]}",
                                 wrapped)
                    )  # fmt: skip
                index += 1
        return Decoded(events, indexes, bad), pos

    def _generic(self, value: bytes, max_t: int) -> Decoded:
        """Any registered writer schema, through fastavro (raises a precise ``DecodeError``)."""
        record = self._codec.decode(value)
        events: list[UsageEvent] = []
        indexes: list[int] = []
        bad: list[BadEvent] = []
        for index, e in enumerate(record.get("events") or []):
            try:
                event = _event_from_avro(e)
                problem = _problem(event, max_t)
            except (KeyError, TypeError) as exc:
                problem = ("invalid", f"malformed event: {exc}")
            if problem is None:
                events.append(event)
                indexes.append(index)
            else:
                bad.append(BadEvent(index, problem[0], f"event {index}: {problem[1]}", value))
        return Decoded(events, indexes, bad)


def _read_map(data: bytes, pos: int, out: dict[str, str]) -> int:
    count, pos = _long(data, pos)
    while count:
        if count < 0:
            count = -count
            _, pos = _long(data, pos)
        for _ in range(count):
            key, pos = _string(data, pos)
            out[key], pos = _string(data, pos)
        count, pos = _long(data, pos)
    return pos


def _event_from_avro(e: dict[str, Any]) -> UsageEvent:
    return UsageEvent(
        e["event_id"], e["account_id"], e["bot_id"], e["conversation_id"], e["category"],
        e["model"], e["tokens_in"], e["tokens_out"], e["messages"], e["conversation_started"],
        e["credits_micro"], e["occurred_at_ms"], dict(e.get("attributes") or {}),
    )  # fmt: skip


def _problem(e: UsageEvent, max_t: int) -> tuple[str, str] | None:
    if not (e.event_id and e.account_id and e.bot_id and e.conversation_id):
        return "missing_id", "event_id, account_id, bot_id and conversation_id must be non-empty"
    if (e.tokens_in | e.tokens_out | e.messages | e.credits_micro) < 0:
        return "negative_amount", "tokens, messages and credits cannot be negative"
    if e.occurred_at_ms > max_t or e.occurred_at_ms < 0:
        return (
            "future_timestamp" if e.occurred_at_ms > 0 else "invalid",
            f"occurred_at_ms {e.occurred_at_ms} is outside [0, {max_t}]",
        )
    if max(map(len, (e.event_id, e.account_id, e.bot_id, e.conversation_id))) > MAX_ID:
        return "invalid", f"an id is longer than {MAX_ID} characters"
    return None


def decode_cap_hit(value: bytes | None, max_record_bytes: int, max_t: int) -> CapHit:
    """A ``CapHit`` record as the core's object; ``DecodeError`` (with a reason) if bad."""
    if value is not None and len(value) > max_record_bytes:
        raise DecodeError(
            f"cap hit record of {len(value):,} bytes is too large", reason="too_large"
        )
    r = codec("CapHit").decode(value)
    ids = (r["hit_id"], r["account_id"], r["bot_id"], r["conversation_id"])
    if not all(ids):
        raise DecodeError("a CapHit needs hit_id, account_id, bot_id and conversation_id",
                          reason="missing_id")  # fmt: skip
    t = r["occurred_at_ms"]
    if t > max_t or t < 0:
        raise DecodeError(f"CapHit occurred_at_ms {t} is outside [0, {max_t}]",
                          reason="future_timestamp" if t > 0 else "invalid")  # fmt: skip
    return CapHit(
        r["account_id"], r["bot_id"], r["conversation_id"], r["category"], r["period"],
        r["period_key"], t, r["hit_id"],
    )  # fmt: skip
