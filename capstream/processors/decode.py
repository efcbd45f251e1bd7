"""Usage and cap-hit records -> core objects, fast, with a DLQ reason for everything refused.

A ``UsageBatch`` (Avro single-object encoding) is read by a hand-written decoder for the
current schema (about twice as fast as fastavro plus building the events); records written
with another registered schema version go through the generic codec. Record-level failures
(too large, not Avro, unknown schema, a body that overruns the record) raise ``DecodeError``;
everything else refuses only the event it is in: it comes back as a :class:`BadEvent`
holding its own bytes wrapped as a one-event batch, so a dead letter can be re-driven
without replaying its neighbours. Decoding is strict: an enum index outside the symbols, a
boolean byte other than 0 or 1, a long of more than 64 bits or invalid UTF-8 refuse the
event; every value is then checked by :func:`capstream.core.limits.event_problem`, the rules
the SDK and the sink apply too.

The worker and the sink also give the partition a record arrived on: an event whose
account belongs to another partition (a producer that does not key by account) comes back
in :attr:`Decoded.misplaced`, neither counted nor stored where it landed (the worker sends
it on to its home partition).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from capstream.core.limits import MAX_ID, MAX_MODEL, Problem, event_problem
from capstream.core.models import CapHit, UsageEvent
from capstream.errors import DecodeError
from capstream.gateway.partitioner import partition_for
from capstream.gateway.wire import encode_batch
from capstream.streams.codecs import MAGIC, codec

CATEGORIES = ("text", "vision", "audio", "documents")
PERIODS = ("daily", "monthly")
_HEADER = 10
_STRINGS_LIMIT = 100_000
"""Distinct strings the decoder keeps decoded (each at most :data:`_CACHED_CHARS` bytes)."""
_CACHED_CHARS = max(MAX_ID, MAX_MODEL)
_HOMES_LIMIT = 100_000
_INT64 = 1 << 64
"""A zigzag varint of 64 bits or fewer is below this before it is unzigzagged."""


class BadEvent(NamedTuple):
    """An event refused inside an otherwise good record."""

    position: int
    """The event's place in its record."""
    reason: str
    error: str
    raw: bytes
    """The event's own Avro body wrapped as a one-event ``UsageBatch``."""


class Misplaced(NamedTuple):
    """A good event on a partition that is not its account's: to be sent home."""

    position: int
    home: int
    """The partition Kafka's default partitioner gives its account id."""
    account_id: str
    raw: bytes
    """The event's own Avro body wrapped as a one-event ``UsageBatch``."""


class Decoded(NamedTuple):
    """What one usage record holds: the good events, their places in the record, the bad."""

    events: list[UsageEvent]
    indexes: list[int] | None
    """Each good event's place in the record; None when it equals its place in ``events``."""
    bad: list[BadEvent]
    misplaced: tuple[Misplaced, ...] = ()
    """Good events of accounts homed on another partition (see :meth:`UsageDecoder.decode`)."""


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro zigzag varint at ``pos``: (value, next position); unbounded (see ``_INT64``)."""
    b = data[pos]
    pos += 1
    r = b & 0x7F
    shift = 7
    while b & 0x80:
        b = data[pos]
        pos += 1
        r |= (b & 0x7F) << shift
        shift += 7
    if r >= _INT64:
        raise OverflowError
    return (r >> 1) ^ -(r & 1), pos


def _string(data: bytes, pos: int) -> tuple[str, int]:
    """Avro string at ``pos``: (text, next position); IndexError if it overruns the record."""
    ln, pos = _long(data, pos)
    end = pos + ln
    if ln < 0 or end > len(data):
        raise IndexError
    return data[pos:end].decode(), end


def _skip_string(data: bytes, pos: int) -> int:
    ln, pos = _long(data, pos)
    end = pos + ln
    if ln < 0 or end > len(data):
        raise IndexError
    return end


def _skip_long(data: bytes, pos: int) -> int:
    while data[pos] & 0x80:
        pos += 1
    return pos + 1


def _skip_event(data: bytes, pos: int) -> int:
    """The end of the event at ``pos``, walking its layout without decoding any value
    (IndexError if it overruns the record: then the record's framing is broken)."""
    for _ in range(4):  # ids
        pos = _skip_string(data, pos)
    pos = _skip_long(data, pos)  # category
    pos = _skip_string(data, pos)  # model
    for _ in range(3):  # tokens in, out, messages
        pos = _skip_long(data, pos)
    if pos >= len(data):
        raise IndexError
    pos += 1  # conversation_started
    pos = _skip_long(data, pos)  # credits
    pos = _skip_long(data, pos)  # occurred_at
    count, pos = _long(data, pos)
    while count:
        if count < 0:
            count = -count
            pos = _skip_long(data, pos)
        for _ in range(count):
            pos = _skip_string(data, pos)
            pos = _skip_string(data, pos)
        count, pos = _long(data, pos)
    return pos


def _cached(data: bytes, pos: int, strings: dict[bytes, str]) -> tuple[str, int]:
    """:func:`_string`, decoded once per distinct value (ids and models repeat); values
    longer than any valid id or model are decoded but not kept."""
    ln, pos = _long(data, pos)
    end = pos + ln
    if ln < 0 or end > len(data):
        raise IndexError
    raw = data[pos:end]
    s = strings.get(raw)
    if s is None:
        s = raw.decode()
        if ln <= _CACHED_CHARS:
            strings[raw] = s
    return s, end


class UsageDecoder:
    """Decodes ``UsageBatch`` records and validates each event; keeps a cache of id strings.

    ``partitions``: the usage topic's partition count; with it, :meth:`decode` given the
    record's partition sets apart the events whose account lives on another partition.
    """

    def __init__(self, max_record_bytes: int, partitions: int = 0) -> None:
        self.max_record_bytes = max_record_bytes
        self.partitions = partitions
        self._codec = codec("UsageBatch")
        self._header = MAGIC + self._codec.fingerprint
        self._strings: dict[bytes, str] = {}
        self._homes: dict[str, int] = {}

    def decode(self, value: bytes | None, max_occurred_at_ms: int, partition: int = -1) -> Decoded:
        """The events of one record; raises ``DecodeError`` if the record as a whole is bad.

        ``max_occurred_at_ms``: the latest event time accepted (the record's time plus the
        allowed skew). ``partition``: the partition the record was read from (-1: unchecked).
        """
        if value is None or not value:
            raise DecodeError("empty usage record (a tombstone or no bytes)", reason="empty")
        if len(value) > self.max_record_bytes:
            raise DecodeError(
                f"usage record of {len(value):,} bytes is larger than the limit "
                f"{self.max_record_bytes:,}; split batches at the producer",
                reason="too_large",
            )
        if value[:_HEADER] != self._header:
            decoded = self._generic(value, max_occurred_at_ms)
        else:
            try:
                decoded, end = self._fast(value, max_occurred_at_ms)
            except (IndexError, OverflowError):
                raise DecodeError(
                    "corrupt UsageBatch: a length or a number overruns the record",
                    reason="corrupt",
                ) from None
            except UnicodeDecodeError:
                raise DecodeError(
                    "corrupt UsageBatch: batch_id or producer is not valid UTF-8",
                    reason="corrupt",
                ) from None
            if end != len(value):
                raise DecodeError(
                    f"corrupt UsageBatch: {len(value) - end} bytes after the last event",
                    reason="corrupt",
                )
        if partition >= 0 and self.partitions > 0 and decoded.events:
            return self._home(decoded, value, partition)
        return decoded

    def home_of(self, account_id: str) -> int:
        """The partition of ``account_id`` (Kafka's murmur2 of its UTF-8 bytes)."""
        homes = self._homes
        home = homes.get(account_id)
        if home is None:
            if len(homes) >= _HOMES_LIMIT:
                homes.clear()
            home = homes[account_id] = partition_for(account_id.encode(), self.partitions)
        return home

    def _home(self, decoded: Decoded, value: bytes, partition: int) -> Decoded:
        """Set apart the events of accounts whose home is not ``partition``."""
        homes = self._homes
        events = decoded.events
        n = len(events)
        i = 0
        while i < n:
            account_id = events[i].account_id
            home = homes.get(account_id)
            if home is None:
                home = self.home_of(account_id)
            if home != partition:
                break
            i += 1
        if i == n:  # the common case: every event is at home
            return decoded
        indexes = decoded.indexes if decoded.indexes is not None else list(range(n))
        kept: list[UsageEvent] = []
        kept_indexes: list[int] = []
        away: list[tuple[int, int, UsageEvent]] = []
        for event, index in zip(events, indexes, strict=True):
            home = self.home_of(event.account_id)
            if home == partition:
                kept.append(event)
                kept_indexes.append(index)
            else:
                away.append((index, home, event))
        bodies = event_bodies(value)
        batch_id, producer, sent_at = batch_header(value)
        misplaced = tuple(
            Misplaced(
                index,
                home,
                event.account_id,
                encode_batch(batch_id, producer, sent_at, [bodies[index]]),
            )
            for index, home, event in away
        )
        return Decoded(kept, kept_indexes, decoded.bad, misplaced)

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
                problem: Problem | None = None
                try:
                    eid, pos = _string(data, pos)
                    acct, pos = _cached(data, pos, strings)
                    bot, pos = _cached(data, pos, strings)
                    conv, pos = _cached(data, pos, strings)
                    b = data[pos]
                    if b < 8 and not b & 1:
                        cat_index = b >> 1
                        pos += 1
                    else:
                        cat_index, pos = _long(data, pos)
                        problem = Problem(
                            "invalid", "category",
                            f"enum index {cat_index} is not one of 0-3 ({', '.join(CATEGORIES)})",
                        )  # fmt: skip
                        cat_index = 0
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
                    pos += 1
                    if flag > 1 and problem is None:
                        problem = Problem(
                            "invalid", "conversation_started",
                            f"boolean byte {flag} is neither 0 nor 1",
                        )  # fmt: skip
                    credits, pos = _long(data, pos)
                    t, pos = _long(data, pos)
                    if data[pos] == 0:
                        attrs: dict[str, str] = {}
                        pos += 1
                    else:
                        attrs = {}
                        pos = _read_map(data, pos, attrs)
                except (UnicodeDecodeError, OverflowError) as exc:
                    pos = _skip_event(data, start)
                    what = "a string is not valid UTF-8" if isinstance(
                        exc, UnicodeDecodeError
                    ) else "a number is longer than 64 bits"  # fmt: skip
                    problem = Problem("invalid", "event", what)
                    eid = acct = bot = conv = model = ""
                    cat_index = tokens_in = tokens_out = messages = credits = t = flag = 0
                    attrs = {}
                if problem is None:
                    problem = event_problem(
                        eid, acct, bot, conv, model, tokens_in, tokens_out, messages, credits,
                        t, attrs, max_t,
                    )  # fmt: skip
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
                    shown = eid if len(eid) <= 60 else eid[:60] + "..."
                    bad.append(
                        BadEvent(index, problem.reason,
                                 f"event {index} ({shown!r}): {problem.field} {problem.message}",
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
            problem: Problem | None
            try:
                event = _event_from_avro(e)
                problem = _problem(event, max_t)
            except (KeyError, TypeError) as exc:
                problem = Problem("invalid", "event", f"is malformed: {exc}")
            if problem is None:
                events.append(event)
                indexes.append(index)
            else:
                bad.append(
                    BadEvent(index, problem.reason,
                             f"event {index}: {problem.field} {problem.message}", value)
                )  # fmt: skip
        return Decoded(events, indexes, bad)


def batch_header(value: bytes) -> tuple[str, str, int]:
    """(batch_id, producer, sent_at_ms) of a current-schema ``UsageBatch`` record."""
    batch_id, pos = _string(value, _HEADER)
    producer, pos = _string(value, pos)
    sent_at, _ = _long(value, pos)
    return batch_id, producer, sent_at


def event_bodies(value: bytes) -> list[bytes]:
    """Each event's Avro body, in order, of a current-schema ``UsageBatch`` record."""
    pos = _skip_string(value, _HEADER)
    pos = _skip_string(value, pos)
    pos = _skip_long(value, pos)
    bodies: list[bytes] = []
    while True:
        count, pos = _long(value, pos)
        if count == 0:
            return bodies
        if count < 0:
            count = -count
            pos = _skip_long(value, pos)
        for _ in range(count):
            end = _skip_event(value, pos)
            bodies.append(value[pos:end])
            pos = end


def keep_events(value: bytes, keep: list[int]) -> bytes:
    """The record ``value`` with only the events at the places ``keep`` (a new batch with the
    same batch id, producer and time): what the sink stores of a record with bad events."""
    bodies = event_bodies(value)
    batch_id, producer, sent_at = batch_header(value)
    return encode_batch(batch_id, producer, sent_at, [bodies[i] for i in keep])


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


def _problem(e: UsageEvent, max_t: int) -> Problem | None:
    return event_problem(
        e.event_id, e.account_id, e.bot_id, e.conversation_id, e.model, e.tokens_in,
        e.tokens_out, e.messages, e.credits_micro, e.occurred_at_ms, e.attributes, max_t,
    )  # fmt: skip


def decode_cap_hit(value: bytes | None, max_record_bytes: int, max_t: int) -> CapHit:
    """A ``CapHit`` record as the core's object; ``DecodeError`` (with a reason) if bad.

    Strict: a record must be the canonical encoding of what it decodes to (an enum index
    outside the symbols or an overlong number is refused), and ids and times obey the
    same bounds as usage events."""
    if value is not None and len(value) > max_record_bytes:
        raise DecodeError(
            f"cap hit record of {len(value):,} bytes is too large", reason="too_large"
        )
    hits = codec("CapHit")
    r = hits.decode(value)
    if value is not None and value[2:_HEADER] == hits.fingerprint and hits.encode(r) != value:
        raise DecodeError(
            "corrupt CapHit: not the canonical Avro encoding of its fields (an enum index "
            "out of range, a boolean byte other than 0/1 or an overlong number)",
            reason="corrupt",
        )
    problem = event_problem(
        r["hit_id"], r["account_id"], r["bot_id"], r["conversation_id"], "", 0, 0, 0, 0,
        r["occurred_at_ms"], None, max_t,
    )  # fmt: skip
    if problem is None and len(r["period_key"]) > MAX_ID:
        problem = Problem("invalid", "period_key", f"is longer than {MAX_ID} characters")
    if problem is not None:
        raise DecodeError(f"CapHit {problem.field} {problem.message}", reason=problem.reason)
    return CapHit(
        r["account_id"], r["bot_id"], r["conversation_id"], r["category"], r["period"],
        r["period_key"], r["occurred_at_ms"], r["hit_id"],
    )  # fmt: skip
