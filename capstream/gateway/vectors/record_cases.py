"""``partitions.json``, ``control_states.json``, ``cap_hits.json`` and
``conversation_sent.json``: keys, records and their bytes."""

from __future__ import annotations

from typing import Any

from capstream.core.limits import (
    MAX_ID,
)
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CapHit,
    CapStatus,
    EnforcementState,
)
from capstream.errors import DecodeError
from capstream.gateway.ledger import expires_at, sent_key
from capstream.gateway.vectors.common import HOUR, MINUTE, PARTITION_COUNTS, SAFE, T0, jsonable
from capstream.streams.codecs import MAGIC, codec
from capstream.streams.control_wire import decode_state, state_to_avro
from capstream.streams.partitioner import murmur2

# -- partitions ----------------------------------------------------------------------------


def _partition_keys() -> list[bytes]:
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", b"abcdef", b"abcdefg", b"abcdefgh"]
    keys += [f"acct-{i}".encode() for i in range(100)]
    keys += [f"tenant-{i:04d}-{'x' * (i % 9)}".encode() for i in range(0, 400, 7)]
    keys += [s.encode() for s in ("账户-1", "çà-ü", "💬", "a/b", " ", "\x00\x01", "-" * 200)]
    keys += [bytes(range(256)), bytes([0xFF] * 7), bytes([0x80, 0x7F, 0x00, 0xFF])]
    return keys


def partition_vectors() -> dict[str, Any]:
    cases = []
    for key in _partition_keys():
        h = murmur2(key)
        cases.append(
            {
                "key_hex": key.hex(),
                "murmur2": h,
                "partitions": {str(n): (h & 0x7FFFFFFF) % n for n in PARTITION_COUNTS},
            }
        )
    return {
        "about": "Kafka's default partitioner: (murmur2(key) & 0x7fffffff) % partitions",
        "cases": cases,
    }


# -- control states ------------------------------------------------------------------------


def a_state(bot: str = "bot-1", version: int = 1, **changes: Any) -> EnforcementState:
    fields: dict[str, Any] = {
        "account_id": "acct-1",
        "bot_id": bot,
        "version": version,
        "updated_at_ms": T0,
        "blocked_until_ms": None,
        "block_policy_id": None,
        "model": "claude-sonnet-4-6",
        "downgraded_until_ms": None,
        "batching_interval_s": 3,
        "throttled_until_ms": None,
        "throttle_reason": None,
        "caps": {},
        "plan": "pro",
        "fallback_text_daily": "Thanks! 👋 We're on a quick break — back tomorrow!",
        "fallback_text_monthly": "Thanks! 👋 We're on a quick break — back next week!",
        "premium_model": "claude-sonnet-4-6",
    }
    fields.update(changes)
    return EnforcementState(**fields)


def _state_cases() -> list[tuple[str, EnforcementState]]:
    caps = {
        "text": CapStatus("daily", "2026-11-18", T0 + 10 * HOUR),
        "vision": CapStatus("monthly", "2026-11", T0 + 300 * HOUR),
    }
    return [
        ("nothing in force", a_state()),
        ("account-wide state", a_state(ACCOUNT_WIDE_BOT, 4)),
        ("blocked", a_state(version=2, blocked_until_ms=T0 + HOUR, block_policy_id="p-hourly")),
        ("capped text and vision", a_state(version=3, caps=caps)),
        (
            "downgraded and throttled",
            a_state(
                version=5,
                model="claude-haiku",
                downgraded_until_ms=T0 + 5 * HOUR,
                batching_interval_s=60,
                throttled_until_ms=T0 + 15 * MINUTE,
                throttle_reason="budget_at_risk",
            ),
        ),
        (
            "non-ASCII texts, empty premium model, large version",
            a_state(
                "бот-1",
                version=SAFE,
                plan="free",
                fallback_text_daily="谢谢！👋 我们正在短暂休息——明天回来！",
                fallback_text_monthly="",
                premium_model="",
            ),
        ),
    ]


def state_json(state: EnforcementState) -> dict[str, Any]:
    r = state_to_avro(state)
    # Map order on the wire is the writer's; compare caps by key.
    return dict(jsonable(r))


def control_state_vectors() -> dict[str, Any]:
    state_codec = codec("EnforcementState")
    cases = []
    for name, state in _state_cases():
        value = state_codec.encode(state_to_avro(state))
        cases.append({"name": name, "hex": value.hex(), "state": state_json(decode_state(value))})
    good = state_codec.encode(state_to_avro(a_state()))
    video = state_to_avro(a_state())
    video["caps"] = {"video": {"period": "daily", "period_key": "2026-11-18", "resumes_at_ms": 1}}
    bad_values: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("not Avro", b"not avro at all"),
        ("unknown fingerprint", MAGIC + bytes(8) + good[10:]),
        ("truncated body", good[:-5]),
        ("empty account_id", state_codec.encode(state_to_avro(a_state(account_id="")))),
        ("empty bot_id", state_codec.encode(state_to_avro(a_state("")))),
        ("negative version", state_codec.encode(state_to_avro(a_state(version=-1)))),
        (
            "batching below 1 s",
            state_codec.encode(state_to_avro(a_state(batching_interval_s=0))),
        ),
        ("an unknown cap category", state_codec.encode(video)),
    ]
    bad = []
    for name, value in bad_values:
        try:
            decode_state(value)
        except DecodeError as exc:
            bad.append({"name": name, "hex": value.hex(), "reason": exc.reason})
        else:  # pragma: no cover - a vector that decodes is a bug in this list
            raise AssertionError(f"bad control value {name!r} decoded")
    return {
        "about": "control topic values (EnforcementState) and the state each decodes to; "
        "values to refuse with the DecodeError reason",
        "fingerprint_hex": state_codec.fingerprint.hex(),
        "cases": cases,
        "bad": bad,
    }


# -- cap hits ------------------------------------------------------------------------------


def cap_hit_vectors() -> dict[str, Any]:
    hit_codec = codec("CapHit")
    hits = [
        CapHit(
            "acct-1", "bot-1", "conv-1", "text", "daily", "2026-11-18", T0, "bot-1/conv-1/text/0"
        ),
        CapHit("acct-2", "bot/ü", "💬", "documents", "monthly", "2026-11", T0 + 1, "x"),
        CapHit("a" * MAX_ID, "b", "c", "vision", "daily", "2026-11-18", 0, "h" * 300),
    ]
    cases = []
    for hit in hits:
        record = {
            "hit_id": hit.hit_id,
            "account_id": hit.account_id,
            "bot_id": hit.bot_id,
            "conversation_id": hit.conversation_id,
            "category": hit.category,
            "period": hit.period,
            "period_key": hit.period_key,
            "occurred_at_ms": hit.occurred_at_ms,
        }
        cases.append({"hit": record, "hex": hit_codec.encode(record).hex()})
    return {
        "about": "CapHit records (caphits topic, keyed by account_id)",
        "fingerprint_hex": hit_codec.fingerprint.hex(),
        "cases": cases,
    }


# -- what gateways sent (gateway-sent topic) -----------------------------------------------


def conversation_sent_vectors() -> dict[str, Any]:
    sent_codec = codec("ConversationSent")
    sends = [
        ("fallback", "acct-1", "bot-1", "conv-1", "2026-11-18", T0, "gw-py-1"),
        ("fallback", "acct-1", "bot-1", "conv-1", "2026-11", T0 + 1, "gw-ts-1"),
        ("reply", "acct-1", "bot-1", "conv-1", "", T0 + 2, "a1b2c3d4e5f6"),
        ("fallback", "账户-1", "bot/ü", "💬/2", "2026-11-18", T0 + 3, ""),
        ("reply", "a/b", "c", "x", "", 0, "g"),
    ]
    cases = []
    for kind, account, bot, conversation, period, at, gateway in sends:
        record = {
            "kind": kind, "account_id": account, "bot_id": bot, "conversation_id": conversation,
            "period_key": period, "at_ms": at, "expires_at_ms": expires_at(kind, period, at),
            "gateway_id": gateway,
        }  # fmt: skip
        cases.append(
            {
                "sent": record,
                "key": sent_key(kind, account, bot, conversation, period),
                "hex": sent_codec.encode(record).hex(),
            }
        )
    return {
        "about": "ConversationSent records (gateway-sent topic, compacted): what a gateway "
        "sent a conversation, published on each fallback claimed and each throttled reply, "
        "read by every gateway from the beginning; expires_at_ms is at_ms plus 2 days (a "
        "daily period), 32 days (a monthly one) or the reply spacing (60 s)",
        "fingerprint_hex": sent_codec.fingerprint.hex(),
        "cases": cases,
    }
