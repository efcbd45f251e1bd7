"""Control topic records <-> the core's ``EnforcementState``: the key, decoding, encoding.

The processors publish each bot's state (:func:`encode_state`, by hand, byte-identical to
``codec("EnforcementState")``); gateways and the API read them (:func:`decode_state`, with
the checks Avro cannot make). :func:`control_key` is the one ``account_id/bot_id`` key.
"""

from __future__ import annotations

from typing import Any, Final

from capstream.core.models import CATEGORY_INDEX, CapStatus, EnforcementState
from capstream.errors import DecodeError
from capstream.streams.avro_bytes import NULL, SOME, long_bytes, optional_long, string_bytes
from capstream.streams.codecs import MAGIC, codec
from capstream.streams.records import EnforcementStateRecord
from capstream.streams.usage_wire import PERIODS

_PERIODS = frozenset(PERIODS)
_HEADER = MAGIC + codec("EnforcementState").fingerprint
_PERIOD = {p: long_bytes(i) for i, p in enumerate(PERIODS)}  # CapPeriod.avsc, Avro enums


def control_key(account_id: str, bot_id: str) -> bytes:
    """The control topic key of a bot's state: ``account_id/bot_id``."""
    return f"{account_id}/{bot_id}".encode()


def state_from_avro(r: dict[str, Any]) -> EnforcementState:
    """Build the core state from a decoded ``EnforcementState`` record; ``DecodeError`` if bad.

    The checks are the ones Avro cannot make (non-empty ids, a positive batching interval,
    known categories), cheap enough for rebuilding every state at start.
    """
    account_id, bot_id = r["account_id"], r["bot_id"]
    if not account_id or not bot_id:
        raise DecodeError("an EnforcementState needs an account_id and a bot_id", reason="invalid")
    if r["version"] < 0 or r["batching_interval_s"] < 1:
        raise DecodeError(
            f"EnforcementState {account_id}/{bot_id}: negative version or batching < 1 s",
            reason="invalid",
        )
    caps: dict[str, CapStatus] = {}
    for category, cap in r["caps"].items():
        if category not in CATEGORY_INDEX or cap["period"] not in _PERIODS:
            raise DecodeError(
                f"EnforcementState {account_id}/{bot_id}: unknown cap category {category!r}",
                reason="invalid",
            )
        caps[category] = CapStatus(cap["period"], cap["period_key"], cap["resumes_at_ms"])
    return EnforcementState(
        account_id=account_id,
        bot_id=bot_id,
        version=r["version"],
        updated_at_ms=r["updated_at_ms"],
        blocked_until_ms=r["blocked_until_ms"],
        block_policy_id=r["block_policy_id"],
        model=r["model"],
        downgraded_until_ms=r["downgraded_until_ms"],
        batching_interval_s=r["batching_interval_s"],
        throttled_until_ms=r["throttled_until_ms"],
        throttle_reason=r["throttle_reason"],
        caps=caps,
        plan=r["plan"],
        fallback_text_daily=r["fallback_text_daily"],
        fallback_text_monthly=r["fallback_text_monthly"],
        # Records written before the field existed mean "the built-in premium model".
        premium_model=r.get("premium_model") or "",
    )


def decode_state(value: bytes) -> EnforcementState:
    """Decode a control topic value into the core state; raises ``DecodeError``."""
    record = codec("EnforcementState").decode(value)
    try:
        return state_from_avro(record)
    except (KeyError, TypeError, AttributeError) as exc:
        raise DecodeError(f"malformed EnforcementState: {exc}", reason="invalid") from exc


def state_from_record(record: EnforcementStateRecord) -> EnforcementState:
    """The core state of a validated wire record."""
    return state_from_avro(record.model_dump())


def state_to_avro(state: EnforcementState) -> dict[str, Any]:
    """The Avro ``EnforcementState`` record of a core state (the control topic's value)."""
    return {
        "account_id": state.account_id,
        "bot_id": state.bot_id,
        "version": state.version,
        "updated_at_ms": state.updated_at_ms,
        "blocked_until_ms": state.blocked_until_ms,
        "block_policy_id": state.block_policy_id,
        "model": state.model,
        "downgraded_until_ms": state.downgraded_until_ms,
        "batching_interval_s": state.batching_interval_s,
        "throttled_until_ms": state.throttled_until_ms,
        "throttle_reason": state.throttle_reason,
        "caps": {
            c: {"period": s.period, "period_key": s.period_key, "resumes_at_ms": s.resumes_at_ms}
            for c, s in state.caps.items()
        },
        "plan": state.plan,
        "fallback_text_daily": state.fallback_text_daily,
        "fallback_text_monthly": state.fallback_text_monthly,
        "premium_model": state.premium_model,
    }


_CACHE_MAX: Final = 1 << 16
_IDS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
"""(account_id, bot_id) -> (the control key, the value's first bytes: header and both ids)."""
_TEXTS: dict[str, bytes] = {}
"""A short text a state repeats (model, reason, policy id) -> its Avro string."""
_TAILS: dict[tuple[str, str, str, str], bytes] = {}
"""(plan, fallback texts, premium model) -> the value's last bytes, from the caps' end on:
an account's settings, the same in each of its states."""


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:  # bounded: a worker sees ids without end
        cache.clear()
    cache[key] = value


def _text(s: str) -> bytes:
    raw = _TEXTS.get(s)
    if raw is None:
        raw = string_bytes(s)
        _remember(_TEXTS, s, raw)
    return raw


def keyed_state(state: EnforcementState) -> tuple[bytes, bytes]:
    """The control-topic record of ``state``: (:func:`control_key`, :func:`encode_state`).

    What a worker encodes for every state it publishes: the parts a bot's states repeat (its
    ids, its account's texts) are encoded once and kept (bounded caches)."""
    ids = (state.account_id, state.bot_id)
    known = _IDS.get(ids)
    try:
        if known is None:
            head = _HEADER + string_bytes(state.account_id) + string_bytes(state.bot_id)
            known = (control_key(state.account_id, state.bot_id), head)
            _remember(_IDS, ids, known)
        texts = (
            state.plan, state.fallback_text_daily, state.fallback_text_monthly,
            state.premium_model,
        )  # fmt: skip
        tail = _TAILS.get(texts)
        if tail is None:
            tail = b"".join(
                (NULL, string_bytes(texts[0]), string_bytes(texts[1]), string_bytes(texts[2]),
                 string_bytes(texts[3]))
            )  # fmt: skip
            _remember(_TAILS, texts, tail)
        blocked, policy = state.blocked_until_ms, state.block_policy_id
        downgraded, throttled = state.downgraded_until_ms, state.throttled_until_ms
        reason = state.throttle_reason
        parts = [
            known[1],
            long_bytes(state.version),
            long_bytes(state.updated_at_ms),
            optional_long(blocked),
            NULL if policy is None else SOME + _text(policy),
            _text(state.model),
            optional_long(downgraded),
            long_bytes(state.batching_interval_s),
            optional_long(throttled),
            NULL if reason is None else SOME + _text(reason),
        ]
        caps = state.caps
        if caps:
            parts.append(long_bytes(len(caps)))
            for category, cap in caps.items():
                parts += (
                    _text(category),
                    _PERIOD[cap.period],
                    _text(cap.period_key),
                    long_bytes(cap.resumes_at_ms),
                )
        parts.append(tail)
    except (KeyError, TypeError, AttributeError, UnicodeEncodeError, ValueError):
        # The codec says why.
        value = codec("EnforcementState").encode(state_to_avro(state))
        return control_key(state.account_id, state.bot_id), value
    return known[0], b"".join(parts)


def encode_state(state: EnforcementState) -> bytes:
    """The control-topic value of ``state``: ``codec("EnforcementState").encode`` of
    :func:`state_to_avro`, byte for byte (tested), in a tenth of the time."""
    return keyed_state(state)[1]


def record_from_state(state: EnforcementState) -> EnforcementStateRecord:
    """The validated wire record of a core state (what the processors publish)."""
    return EnforcementStateRecord.model_validate(state_to_avro(state))
