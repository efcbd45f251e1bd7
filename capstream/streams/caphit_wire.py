"""``CapHit`` records (a gateway's capped attempt, for the processors' amber feed rows).

Encoding is by hand (a gateway reports one per capped attempt: five times faster than
fastavro on one small record), byte-identical to ``codec("CapHit")`` (tested); decoding
goes through the codec and is strict.
"""

from __future__ import annotations

from capstream.core.limits import MAX_ID, Problem, event_problem
from capstream.core.models import CapHit
from capstream.errors import DecodeError
from capstream.streams.avro_bytes import long_bytes, string_bytes
from capstream.streams.codecs import MAGIC, codec
from capstream.streams.usage_wire import CATEGORIES, HEADER_LEN, PERIODS

_HEADER = MAGIC + codec("CapHit").fingerprint
_CATEGORY = {c: long_bytes(i) for i, c in enumerate(CATEGORIES)}
_PERIOD = {p: long_bytes(i) for i, p in enumerate(PERIODS)}


def encode_cap_hit(hit: CapHit) -> bytes:
    """``codec("CapHit").encode`` of ``hit``, byte for byte (tested), in a fifth of the time."""
    try:
        return b"".join(
            (
                _HEADER,
                string_bytes(hit.hit_id),
                string_bytes(hit.account_id),
                string_bytes(hit.bot_id),
                string_bytes(hit.conversation_id),
                _CATEGORY[hit.category],
                _PERIOD[hit.period],
                string_bytes(hit.period_key),
                long_bytes(hit.occurred_at_ms),
            )
        )
    except (KeyError, TypeError, AttributeError, UnicodeEncodeError):  # the codec says why
        return codec("CapHit").encode(
            {
                "hit_id": hit.hit_id,
                "account_id": hit.account_id,
                "bot_id": hit.bot_id,
                "conversation_id": hit.conversation_id,
                "category": hit.category,
                "period": hit.period,
                "period_key": hit.period_key,
                "occurred_at_ms": hit.occurred_at_ms,
            }
        )


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
    if value is not None and value[2:HEADER_LEN] == hits.fingerprint and hits.encode(r) != value:
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
