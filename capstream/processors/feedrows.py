"""Amber feed rows on the wire and in the feed table: keys, table values, feed-topic records."""

from __future__ import annotations

import json

from capstream.core import FeedKey, FeedRow
from capstream.core.models import CATEGORY_INDEX
from capstream.core.models import CapPeriod as Period
from capstream.errors import DecodeError
from capstream.streams.codecs import codec

__all__ = ["FeedKey", "decode_row", "encode_row", "feed_key_bytes", "feed_record"]

_PERIODS = frozenset(p.value for p in Period)


def feed_key_bytes(key: FeedKey) -> bytes:
    """``account/bot/conversation/local_day/category``: the feed topic and table key."""
    return "/".join(key).encode()


def encode_row(row: FeedRow) -> bytes:
    """The feed table's value of a row (JSON; it keeps the recent hit ids for idempotence)."""
    return json.dumps(
        [
            row.account_id, row.bot_id, row.conversation_id, row.local_day, row.category,
            row.period, row.attempts, row.message, row.cta, row.panel_cta, row.last_hit_ms,
            list(row.recent_hit_ids),
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()  # fmt: skip


def decode_row(raw: bytes) -> FeedRow:
    """Inverse of :func:`encode_row`; ``DecodeError`` if the value is not a feed row."""
    try:
        v = json.loads(raw)
        if v[4] not in CATEGORY_INDEX or v[5] not in _PERIODS or int(v[6]) < 1:
            raise ValueError("unknown category or period, or no attempts")
        return FeedRow(
            v[0], v[1], v[2], v[3], v[4], v[5], int(v[6]), v[7], v[8], v[9], int(v[10]),
            tuple(v[11]),
        )  # fmt: skip
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise DecodeError(f"corrupt feed row in the table: {exc}", reason="corrupt") from exc


def feed_record(row: FeedRow) -> bytes:
    """The feed topic's value (Avro ``FeedRow``)."""
    return codec("FeedRow").encode(
        {
            "account_id": row.account_id,
            "bot_id": row.bot_id,
            "conversation_id": row.conversation_id,
            "local_day": row.local_day,
            "category": row.category,
            "period": row.period,
            "attempts": row.attempts,
            "message": row.message,
            "cta": row.cta,
        }
    )
