"""Usage records -> core events, fast, with a DLQ reason for everything refused.

A ``UsageBatch`` (Avro single-object encoding) is read by a hand-written decoder for the
current schema (about twice as fast as fastavro plus building the events); records written
with another registered schema version go through the generic codec
(:mod:`capstream.streams.usage_strict`). Record-level failures (too large, not Avro,
unknown schema, a body that overruns the record) raise ``DecodeError``; everything else
refuses only the event it is in: it comes back as a :class:`BadEvent` holding its own bytes
wrapped as a one-event batch, so a dead letter can be re-driven without replaying its
neighbours. Decoding is strict: an enum index outside the symbols, a boolean byte other
than 0 or 1, a long of more than 64 bits or invalid UTF-8 refuse the event; every value is
then checked by :func:`capstream.core.limits.event_problem`, the rules the SDK and the sink
apply too.

The worker and the sink also give the partition a record arrived on: an event whose
account belongs to another partition (a producer that does not key by account) comes back
in :attr:`Decoded.misplaced` (:mod:`capstream.streams.usage_reroute`), neither counted nor
stored where it landed (the worker sends it on to its home partition).
"""

from __future__ import annotations

from capstream.core.limits import MAX_ID, MAX_MODEL, Problem, event_problem
from capstream.core.models import UsageEvent
from capstream.errors import DecodeError
from capstream.streams.avro_bytes import read_long, read_string
from capstream.streams.codecs import MAGIC, codec
from capstream.streams.usage_reroute import Homes
from capstream.streams.usage_results import BadEvent, Decoded, Misplaced
from capstream.streams.usage_strict import decode_generic
from capstream.streams.usage_wire import (
    CATEGORIES,
    HEADER_LEN,
    encode_batch,
    read_map,
    skip_event,
)

__all__ = ["BadEvent", "Decoded", "Misplaced", "UsageDecoder"]

_STRINGS_LIMIT = 100_000
"""Distinct strings the decoder keeps decoded (each at most :data:`_CACHED_CHARS` bytes)."""
_CACHED_CHARS = max(MAX_ID, MAX_MODEL)


def _cached(data: bytes, pos: int, strings: dict[bytes, str]) -> tuple[str, int]:
    """``read_string``, decoded once per distinct value (ids and models repeat); values
    longer than any valid id or model are decoded but not kept."""
    ln, pos = read_long(data, pos)
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
        self._homes = Homes(partitions)

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
        if value[:HEADER_LEN] != self._header:
            decoded = decode_generic(self._codec, value, max_occurred_at_ms)
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
            return self._homes.split(decoded, value, partition)
        return decoded

    def home_of(self, account_id: str) -> int:
        """The partition of ``account_id`` (Kafka's murmur2 of its UTF-8 bytes)."""
        return self._homes.home_of(account_id)

    def _fast(self, data: bytes, max_t: int) -> tuple[Decoded, int]:
        strings = self._strings
        if len(strings) > _STRINGS_LIMIT:
            strings.clear()
        events: list[UsageEvent] = []
        append = events.append
        bad: list[BadEvent] = []
        indexes: list[int] | None = None
        pos = HEADER_LEN
        batch_id, pos = read_string(data, pos)
        producer, pos = read_string(data, pos)
        sent_at, pos = read_long(data, pos)
        index = 0
        while True:
            count, pos = read_long(data, pos)
            if count == 0:
                break
            if count < 0:
                count = -count
                _, pos = read_long(data, pos)  # block size in bytes
            for _ in range(count):
                # Numbers have inlined fast paths for one and two bytes (the common case);
                # strings are checked against the record's end; a truncated number raises
                # IndexError. Ids and models are interned in a cache of decoded strings.
                start = pos
                problem: Problem | None = None
                try:
                    eid, pos = read_string(data, pos)
                    acct, pos = _cached(data, pos, strings)
                    bot, pos = _cached(data, pos, strings)
                    conv, pos = _cached(data, pos, strings)
                    b = data[pos]
                    if b < 8 and not b & 1:
                        cat_index = b >> 1
                        pos += 1
                    else:
                        cat_index, pos = read_long(data, pos)
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
                        tokens_in, pos = read_long(data, pos)
                    b = data[pos]  # tokens_out
                    if b < 0x80:
                        tokens_out = (b >> 1) ^ -(b & 1)
                        pos += 1
                    elif data[pos + 1] < 0x80:
                        v = (b & 0x7F) | (data[pos + 1] << 7)
                        tokens_out = (v >> 1) ^ -(v & 1)
                        pos += 2
                    else:
                        tokens_out, pos = read_long(data, pos)
                    b = data[pos]  # messages
                    if b < 0x80:
                        messages = (b >> 1) ^ -(b & 1)
                        pos += 1
                    else:
                        messages, pos = read_long(data, pos)
                    flag = data[pos]
                    pos += 1
                    if flag > 1 and problem is None:
                        problem = Problem(
                            "invalid", "conversation_started",
                            f"boolean byte {flag} is neither 0 nor 1",
                        )  # fmt: skip
                    credits, pos = read_long(data, pos)
                    t, pos = read_long(data, pos)
                    if data[pos] == 0:
                        attrs: dict[str, str] = {}
                        pos += 1
                    else:
                        attrs = {}
                        pos = read_map(data, pos, attrs)
                except (UnicodeDecodeError, OverflowError) as exc:
                    pos = skip_event(data, start)
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
