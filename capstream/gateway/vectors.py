"""Shared test vectors: what every gateway SDK (Python, TypeScript) must produce, byte for byte.

``capstream vectors generate`` writes them to ``testdata/vectors/`` from the reference code:
the Avro codecs (``capstream.streams.codecs``, fastavro), the core's ``gate`` and
``FallbackLedger``, and Kafka's murmur2 partitioner. Both SDKs' test suites replay them, and
``tests/unit/gateway/test_vectors.py`` fails when the files differ from what this module
generates now (a schema, a rule or a text changed: regenerate, and the TypeScript tests show
what the TypeScript SDK must change).

Files (JSON; Avro bytes as lowercase hex; times in epoch ms; longs beyond 2**53 - 1 as
decimal strings so that JavaScript reads them exactly):

- ``partitions.json``: keys (UTF-8, given as hex) -> signed murmur2 and the partition for
  several partition counts.
- ``usage_batches.json``: ``UsageBatch`` records (single-object encoding) of given events,
  and events ``record()`` must refuse, with the field it names.
- ``control_states.json``: control topic values with the state they decode to, and values
  that must be refused, with the ``DecodeError`` reason.
- ``cap_hits.json``: ``CapHit`` records of given hits.
- ``conversation_sent.json``: ``ConversationSent`` records (what gateways sent, shared
  through the gateway-sent topic) with their topic keys.
- ``gate_sequences.json``: states held by a gateway, then calls (account, bot, conversation,
  category, now) in order with the verdict of each; one fresh ledger per sequence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from capstream.core.gate import FallbackLedger, gate
from capstream.core.limits import (
    DEFAULT_MAX_FUTURE_SKEW_MS,
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_VALUE,
    MAX_ATTRIBUTES,
    MAX_CREDITS_MICRO,
    MAX_ID,
    MAX_MESSAGES,
    MAX_MODEL,
    MAX_OCCURRED_AT_MS,
    MAX_TOKENS,
    MIN_OCCURRED_AT_MS,
    event_problem,
)
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CATEGORY_INDEX,
    DEFAULT_PREMIUM_MODEL,
    FAST_BATCHING_S,
    CapHit,
    CapStatus,
    EnforcementState,
    Verdict,
)
from capstream.errors import DecodeError
from capstream.gateway.errors import UnknownCategoryError
from capstream.gateway.ledger import expires_at, sent_key
from capstream.gateway.recorder import DEFAULT_CONVERSATIONS_TRACKED
from capstream.streams.codecs import MAGIC, codec
from capstream.streams.control_wire import decode_state, state_to_avro
from capstream.streams.partitioner import murmur2

FILES = (
    "partitions.json",
    "usage_batches.json",
    "control_states.json",
    "cap_hits.json",
    "gate_sequences.json",
    "conversation_sent.json",
)
DEFAULT_DIR = Path("testdata/vectors")
SAFE = (1 << 53) - 1
PARTITION_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 100, 1000)
T0 = 1_795_000_000_000  # 2026-11-18T09:46:40Z: fixed, so the files never change by themselves
HOUR = 3_600_000
MINUTE = 60_000


def _long(n: int) -> int | str:
    """A long as JSON: a number when JavaScript reads it exactly, else a decimal string."""
    return n if -SAFE <= n <= SAFE else str(n)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _long(value)
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")


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


# -- usage batches -------------------------------------------------------------------------


def _event(i: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"evt-{i}",
        "account_id": "acct-1",
        "bot_id": "bot-1",
        "conversation_id": "conv-1",
        "category": "text",
        "model": "claude-sonnet-4-6",
        "tokens_in": 420,
        "tokens_out": 180,
        "messages": 1,
        "conversation_started": False,
        "credits_micro": 2300,
        "occurred_at_ms": T0 + i,
        "attributes": [],
    }
    event.update(changes)
    return event


def _batch_cases() -> list[dict[str, Any]]:
    big = [0, 1, 63, 64, 127, 128, 8191, 8192, (1 << 20) - 1, 1 << 20, (1 << 27) - 1, 1 << 27]
    return [
        {"name": "one event", "events": [_event(1)]},
        {"name": "no events", "events": []},
        {
            "name": "four categories, a new conversation, attributes, an empty model",
            "events": [
                _event(2, category="text", conversation_started=True),
                _event(3, category="vision", model="", attributes=[["lang", "en"], ["2", "x"]]),
                _event(4, category="audio", bot_id="bot-2", attributes=[["k", "é"]]),
                _event(5, category="documents", account_id="acct-2", messages=0),
            ],
        },
        {
            "name": "non-ASCII ids and texts",
            "events": [
                _event(
                    6,
                    event_id="évé-6",
                    account_id="账户-1",
                    bot_id="bot/ü",
                    conversation_id="💬-1",
                    model="modèle",
                )
            ],
        },
        {
            "name": "counts across varint sizes",
            "events": [
                _event(10 + j, tokens_in=n, tokens_out=big[-1 - j], credits_micro=n * 3)
                for j, n in enumerate(big)
            ],
        },
        {
            "name": "the largest counts, the earliest time (core.limits)",
            "events": [
                _event(
                    30,
                    tokens_in=MAX_TOKENS,
                    tokens_out=MAX_TOKENS,
                    messages=MAX_MESSAGES,
                    credits_micro=MAX_CREDITS_MICRO,
                    occurred_at_ms=MIN_OCCURRED_AT_MS,
                )
            ],
        },
        {
            "name": "ids and model of the longest length",
            "events": [
                _event(
                    31,
                    event_id="e" * MAX_ID,
                    account_id="a" * MAX_ID,
                    bot_id="b" * MAX_ID,
                    conversation_id="c" * MAX_ID,
                    model="m" * MAX_MODEL,
                )
            ],
        },
        {
            "name": "the most attributes, the longest keys and values (non-ASCII counted in "
            "characters)",
            "events": [
                _event(
                    32,
                    attributes=[
                        [f"{i:02d}" + "k" * (MAX_ATTRIBUTE_KEY - 2), "v" * MAX_ATTRIBUTE_VALUE]
                        for i in range(MAX_ATTRIBUTES - 1)
                    ]
                    + [["ü" * MAX_ATTRIBUTE_KEY, "💬" * MAX_ATTRIBUTE_VALUE]],
                )
            ],
        },
        {
            "name": "many events (multi-byte array count)",
            "events": [_event(100 + i, conversation_id=f"conv-{i % 7}") for i in range(70)],
        },
    ]


def _avro_event(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "attributes": dict(event["attributes"])}


FUTURE_MARGIN_MS = 60_000
"""How far past the allowed skew the "after now" refusal is stamped: a margin, so that the
milliseconds between building the event and validating it cannot make it acceptable."""

BAD_EVENTS: tuple[tuple[str, Any], ...] = (
    ("event_id", ""),
    ("event_id", None),
    ("event_id", "e" * (MAX_ID + 1)),
    ("account_id", ""),
    ("account_id", "a" * (MAX_ID + 1)),
    ("bot_id", 7),
    ("bot_id", "b" * (MAX_ID + 1)),
    ("conversation_id", "\ud800"),
    ("conversation_id", "c" * (MAX_ID + 1)),
    ("conversation_id", "💬" * (MAX_ID + 1)),
    ("category", "video"),
    ("model", "m" * (MAX_MODEL + 1)),
    ("tokens_in", -1),
    ("tokens_in", MAX_TOKENS + 1),
    ("tokens_out", 2.5),
    ("tokens_out", MAX_TOKENS + 1),
    ("messages", -3),
    ("messages", MAX_MESSAGES + 1),
    ("credits_micro", "lots"),
    ("credits_micro", MAX_CREDITS_MICRO + 1),
    ("credits_micro", (1 << 63) - 1),
    ("conversation_started", "yes"),
    ("occurred_at_ms", "now"),
    ("occurred_at_ms", 0),
    ("occurred_at_ms", MIN_OCCURRED_AT_MS - 1),
    ("occurred_at_ms", MAX_OCCURRED_AT_MS),
    ("attributes", [["k", 1]]),
    ("attributes", [[f"k{i}", "v"] for i in range(MAX_ATTRIBUTES + 1)]),
    ("attributes", [["k" * (MAX_ATTRIBUTE_KEY + 1), "v"]]),
    ("attributes", [["lang", "v" * (MAX_ATTRIBUTE_VALUE + 1)]]),
    ("attributes", [["emoji", "💬" * (MAX_ATTRIBUTE_VALUE + 1)]]),
)
"""(field, value): one bad field in an otherwise good event."""


def _limits_message(event: dict[str, Any], field: str) -> str | None:
    """The error text a refusal by ``core.limits`` gives (both SDKs must give it word for
    word), or None when the field fails a type check first, is a missing id (the SDKs say
    "is required"), or the text depends on the clock (a time too far ahead names the limit
    it was compared with)."""
    try:
        problem = event_problem(
            event["event_id"], event["account_id"], event["bot_id"], event["conversation_id"],
            event["model"], event["tokens_in"], event["tokens_out"], event["messages"],
            event["credits_micro"], event["occurred_at_ms"], dict(event["attributes"]),
            MAX_OCCURRED_AT_MS,
        )  # fmt: skip
    except (TypeError, ValueError):
        return None
    if problem is None or problem.field != field:
        return None
    if problem.reason in ("future_timestamp", "missing_id"):  # the SDKs say it their own way
        return None
    return f"invalid usage event: {problem.field}: {problem.message}"


def usage_batch_vectors() -> dict[str, Any]:
    batch_codec = codec("UsageBatch")
    cases = []
    for i, case in enumerate(_batch_cases()):
        batch = {
            "batch_id": f"batch-{i}",
            "producer": "vectors" if i % 2 == 0 else "",
            "sent_at_ms": T0 + 1000 + i,
            "events": case["events"],
        }
        value = batch_codec.encode({**batch, "events": [_avro_event(e) for e in case["events"]]})
        cases.append({"name": case["name"], **_jsonable(batch), "hex": value.hex()})
    bad: list[dict[str, Any]] = []
    for field, value in BAD_EVENTS:
        event = _event(0)
        event[field] = value
        if isinstance(value, str) and value.startswith("\ud800"):
            event[field] = None  # JSON cannot hold a lone surrogate: the test builds it
            bad.append({"field": field, "event": _jsonable(event), "lone_surrogate": True})
            continue
        case = {"field": field, "event": _jsonable(event)}
        message = _limits_message(event, field)
        if message is not None:
            case["message"] = message
        bad.append(case)
    # Later than the clock plus the allowed skew: the test stamps it from its own clock.
    bad.append(
        {
            "field": "occurred_at_ms",
            "event": _jsonable(_event(0)),
            "occurred_at_from_now_ms": DEFAULT_MAX_FUTURE_SKEW_MS + FUTURE_MARGIN_MS,
        }
    )
    return {
        "about": "UsageBatch single-object records (C3 01, CRC-64-AVRO fingerprint, body) "
        "and events record() must refuse, naming the field (and, for the bounds of "
        "core.limits, with the error's whole text); occurred_at_from_now_ms: set "
        "occurred_at_ms to the test's clock plus that",
        "limits": {
            "max_id": MAX_ID,
            "max_model": MAX_MODEL,
            "max_tokens": MAX_TOKENS,
            "max_messages": MAX_MESSAGES,
            "max_credits_micro": MAX_CREDITS_MICRO,
            "min_occurred_at_ms": MIN_OCCURRED_AT_MS,
            "max_occurred_at_ms": MAX_OCCURRED_AT_MS,
            "max_future_skew_ms": DEFAULT_MAX_FUTURE_SKEW_MS,
            "max_attributes": MAX_ATTRIBUTES,
            "max_attribute_key": MAX_ATTRIBUTE_KEY,
            "max_attribute_value": MAX_ATTRIBUTE_VALUE,
        },
        "fingerprint_hex": batch_codec.fingerprint.hex(),
        "cases": cases,
        "bad_events": bad,
        "default_conversations_tracked": DEFAULT_CONVERSATIONS_TRACKED,
        "conversation_started": [
            {**seq, "events": _jsonable(seq["events"])} for seq in _started_sequences()
        ],
    }


def derived_started(tracked: int, events: list[dict[str, Any]]) -> list[bool | None]:
    """What a recorder sends as ``conversation_started`` for each event recorded in order
    (None: the event is refused). Left out (None), it is True for the first event of an
    (account, bot, conversation) not among the last ``tracked`` seen (0: never); a refused
    event does not count as seen; an explicit value is sent as given and marks nothing."""
    seen: dict[tuple[str, str, str], None] = {}
    out: list[bool | None] = []
    for e in events:
        if e["category"] not in CATEGORY_INDEX:
            out.append(None)
            continue
        started = e["conversation_started"]
        if started is None:
            key = (e["account_id"], e["bot_id"], e["conversation_id"])
            started = bool(tracked) and key not in seen
            if started:
                seen[key] = None
                if len(seen) > tracked:
                    del seen[next(iter(seen))]
        out.append(started)
    return out


def _started_sequences() -> list[dict[str, Any]]:
    def ev(i: int, conv: str, started: bool | None = None, **changes: Any) -> dict[str, Any]:
        return _event(i, conversation_id=conv, conversation_started=started, **changes)

    bounded = [ev(0, "c1"), ev(1, "c1"), ev(2, "c2"), ev(3, "c1"), ev(4, "c2", True),
               ev(5, "c3", category="video"), ev(6, "c3"), ev(7, "c4"), ev(8, "c1"),
               ev(9, "c4", False), ev(10, "c4")]  # fmt: skip
    ids = [ev(20, "x", account_id="a/b", bot_id="c"), ev(21, "x", account_id="a", bot_id="b/c"),
           ev(22, "x", account_id="a", bot_id="b", ), ev(23, "b/x", account_id="a"),
           ev(24, "x", account_id="a/b", bot_id="c"), ev(25, "x", bot_id="bot-2"),
           ev(26, "x")]  # fmt: skip
    seqs = [
        ("2 conversations tracked: the oldest is forgotten; a refused event is not seen; "
         "an explicit value is sent as given", 2, bounded),
        ("0: derivation off, left out is false", 0, [ev(30, "c1"), ev(31, "c1"), ev(32, "c2")]),
        ("the default: per (account, bot, conversation), ids with '/' never collide",
         DEFAULT_CONVERSATIONS_TRACKED, ids),
    ]  # fmt: skip
    return [
        {"name": name, "conversations_tracked": n, "events": events,
         "started": derived_started(n, events)}
        for name, n, events in seqs
    ]  # fmt: skip


# -- control states ------------------------------------------------------------------------


def _state(bot: str = "bot-1", version: int = 1, **changes: Any) -> EnforcementState:
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
        ("nothing in force", _state()),
        ("account-wide state", _state(ACCOUNT_WIDE_BOT, 4)),
        ("blocked", _state(version=2, blocked_until_ms=T0 + HOUR, block_policy_id="p-hourly")),
        ("capped text and vision", _state(version=3, caps=caps)),
        (
            "downgraded and throttled",
            _state(
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
            _state(
                "бот-1",
                version=SAFE,
                plan="free",
                fallback_text_daily="谢谢！👋 我们正在短暂休息——明天回来！",
                fallback_text_monthly="",
                premium_model="",
            ),
        ),
    ]


def _state_json(state: EnforcementState) -> dict[str, Any]:
    r = state_to_avro(state)
    # Map order on the wire is the writer's; compare caps by key.
    return dict(_jsonable(r))


def control_state_vectors() -> dict[str, Any]:
    state_codec = codec("EnforcementState")
    cases = []
    for name, state in _state_cases():
        value = state_codec.encode(state_to_avro(state))
        cases.append({"name": name, "hex": value.hex(), "state": _state_json(decode_state(value))})
    good = state_codec.encode(state_to_avro(_state()))
    video = state_to_avro(_state())
    video["caps"] = {"video": {"period": "daily", "period_key": "2026-11-18", "resumes_at_ms": 1}}
    bad_values: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("not Avro", b"not avro at all"),
        ("unknown fingerprint", MAGIC + bytes(8) + good[10:]),
        ("truncated body", good[:-5]),
        ("empty account_id", state_codec.encode(state_to_avro(_state(account_id="")))),
        ("empty bot_id", state_codec.encode(state_to_avro(_state("")))),
        ("negative version", state_codec.encode(state_to_avro(_state(version=-1)))),
        ("batching below 1 s", state_codec.encode(state_to_avro(_state(batching_interval_s=0)))),
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


# -- gate sequences ------------------------------------------------------------------------

Step = tuple[str, str, str, str, int]  # account, bot, conversation, category, now


def _verdict_json(v: Verdict) -> dict[str, Any]:
    hit = v.cap_hit
    return {
        "action": v.action,
        "model": v.model,
        "batching_interval_s": v.batching_interval_s,
        "text": v.text,
        "reason": v.reason,
        "reply_at_ms": v.reply_at_ms,
        "resumes_at_ms": v.resumes_at_ms,
        "cap_hit": None
        if hit is None
        else {
            "hit_id": hit.hit_id,
            "account_id": hit.account_id,
            "bot_id": hit.bot_id,
            "conversation_id": hit.conversation_id,
            "category": hit.category,
            "period": hit.period,
            "period_key": hit.period_key,
            "occurred_at_ms": hit.occurred_at_ms,
        },
    }


def reference_verdict(
    states: dict[tuple[str, str], EnforcementState],
    ledger: FallbackLedger,
    step: Step,
) -> dict[str, Any]:
    """What a gateway answers: the bot's state, else its account-wide state (core ``gate``),
    else ``allow`` with the default model and 3-second batching (reason ``no_state_yet``)."""
    account, bot, conversation, category, now = step
    state = states.get((account, bot)) or states.get((account, ACCOUNT_WIDE_BOT))
    if category not in CATEGORY_INDEX:  # one error, with a state or without
        return {"error": "unknown_category", "message": str(UnknownCategoryError(category))}
    if state is None:
        return _verdict_json(
            Verdict("allow", DEFAULT_PREMIUM_MODEL, FAST_BATCHING_S, None, "no_state_yet", None)
        )
    return _verdict_json(gate(state, category, conversation, now, ledger))


def _calls(
    bot: str, conversations: list[str], categories: list[str], times: list[int]
) -> list[Step]:
    return [("acct-1", bot, c, cat, t) for t in times for c in conversations for cat in categories]


ALL = ["text", "vision", "audio", "documents"]


def _sequences() -> list[dict[str, Any]]:
    daily = CapStatus("daily", "2026-11-18", T0 + 10 * HOUR)
    monthly = CapStatus("monthly", "2026-11", T0 + 300 * HOUR)
    around = [T0, T0 + 10 * HOUR - 1, T0 + 10 * HOUR, T0 + 10 * HOUR + 1]
    seqs: list[dict[str, Any]] = [
        {
            "name": "nothing in force: allow premium, 3 s, every category",
            "states": [_state()],
            "steps": _calls("bot-1", ["c1", "c2"], ALL, [T0, T0 + HOUR]),
        },
        {
            "name": "a block pauses every category until it ends, then allows",
            "states": [_state(blocked_until_ms=T0 + HOUR, block_policy_id="p-hourly")],
            "steps": _calls("bot-1", ["c1"], ALL, [T0, T0 + HOUR - 1, T0 + HOUR, T0 + 2 * HOUR]),
        },
        {
            "name": "a block wins over caps and throttle",
            "states": [
                _state(
                    blocked_until_ms=T0 + HOUR,
                    block_policy_id="p-1",
                    caps={"text": daily},
                    batching_interval_s=60,
                    throttle_reason="strict",
                )
            ],
            "steps": _calls("bot-1", ["c1"], ALL, [T0, T0 + HOUR]),
        },
        {
            "name": "daily text cap: fallback once per conversation, then skip; resumes",
            "states": [_state(caps={"text": daily})],
            "steps": _calls("bot-1", ["c1", "c2", "c1", "c3"], ["text"], around[:2])
            + _calls("bot-1", ["c1"], ALL, around),
        },
        {
            "name": "media caps skip silently; other categories allowed",
            "states": [_state(caps={"vision": daily, "audio": monthly, "documents": daily})],
            "steps": _calls("bot-1", ["c1", "c2"], ALL, around),
        },
        {
            "name": "monthly text cap uses the monthly text",
            "states": [_state(caps={"text": monthly})],
            "steps": _calls("bot-1", ["c1", "c1", "c2"], ["text"], [T0, T0 + 299 * HOUR]),
        },
        {
            "name": "fallback is per bot and per cap period",
            "states": [
                _state(caps={"text": daily}),
                _state("bot-2", caps={"text": daily}),
                _state("bot-3", caps={"text": CapStatus("daily", "2026-11-19", T0 + 34 * HOUR)}),
            ],
            "steps": [
                ("acct-1", b, "c1", "text", T0 + i)
                for i, b in enumerate(["bot-1", "bot-2", "bot-3", "bot-1", "bot-2", "bot-3"])
            ],
        },
        {
            "name": "a ledger of 2 entries forgets the oldest conversation",
            "ledger_entries": 2,
            "states": [_state(caps={"text": daily})],
            "steps": _calls("bot-1", ["c1", "c2", "c1", "c3", "c1", "c2"], ["text"], [T0]),
        },
        {
            "name": "downgraded until local midnight, then the premium model",
            "states": [
                _state(model="claude-haiku", downgraded_until_ms=T0 + 5 * HOUR),
                _state(
                    "bot-2",
                    model="claude-haiku",
                    downgraded_until_ms=T0 + 5 * HOUR,
                    premium_model="",
                ),
                _state(
                    "bot-3",
                    model="claude-haiku",
                    downgraded_until_ms=T0 + 5 * HOUR,
                    premium_model="claude-opus",
                    caps={"vision": daily},
                ),
            ],
            "steps": [
                s
                for b in ("bot-1", "bot-2", "bot-3")
                for s in _calls(
                    b, ["c1"], ["text", "vision"], [T0, T0 + 5 * HOUR - 1, T0 + 5 * HOUR]
                )
            ],
        },
        {
            "name": "strict throttle: one reply per conversation per minute",
            "states": [_state(batching_interval_s=60, throttle_reason="strict")],
            "steps": [
                ("acct-1", "bot-1", c, "text", t)
                for t in (T0, T0 + 1, T0 + 30_000, T0 + MINUTE - 1, T0 + MINUTE, T0 + MINUTE + 5)
                for c in ("c1", "c2")
            ]
            + [("acct-1", "bot-1", "c3", "vision", T0 + 10 * MINUTE + i) for i in range(3)],
        },
        {
            "name": "smart throttle ends at throttled_until; downgraded and throttled reasons",
            "states": [
                _state(
                    model="claude-haiku",
                    downgraded_until_ms=T0 + 5 * HOUR,
                    batching_interval_s=60,
                    throttled_until_ms=T0 + 15 * MINUTE,
                    throttle_reason="loop_suspected",
                    caps={"audio": daily},
                )
            ],
            "steps": _calls(
                "bot-1",
                ["c1"],
                ["text", "audio"],
                [T0, T0 + 10, T0 + 15 * MINUTE - 1, T0 + 15 * MINUTE, T0 + 15 * MINUTE + 1],
            ),
        },
        {
            "name": "reply spacing ledger of 2 entries forgets the oldest conversation",
            "ledger_entries": 2,
            "states": [_state(batching_interval_s=60, throttle_reason="strict")],
            "steps": [
                ("acct-1", "bot-1", c, "text", T0 + i)
                for i, c in enumerate(["c1", "c2", "c1", "c3", "c1", "c2", "c3"])
            ],
        },
        {
            "name": "unknown bots get the account-wide state, unknown accounts allow",
            "states": [_state(ACCOUNT_WIDE_BOT, caps={"text": daily}), _state("bot-9")],
            "steps": [
                ("acct-1", "bot-new", "c1", "text", T0),
                ("acct-1", "bot-new", "c1", "text", T0 + 1),
                ("acct-1", "bot-9", "c1", "text", T0 + 2),
                ("acct-2", "bot-1", "c1", "text", T0 + 3),
                ("acct-2", "bot-1", "c1", "vision", T0 + 4),
            ],
        },
        {
            "name": "an unknown category is an error, known or unknown bot",
            "states": [_state(), _state("bot-2", caps={"text": daily})],
            "steps": [
                ("acct-1", "bot-1", "c1", "video", T0),
                ("acct-1", "bot-2", "c1", "Text", T0),
                ("acct-9", "bot-1", "c1", "", T0),
            ],
        },
    ]
    return seqs


def gate_vectors() -> dict[str, Any]:
    state_codec = codec("EnforcementState")
    out = []
    for seq in _sequences():
        ledger = FallbackLedger(seq.get("ledger_entries", 100_000))
        states = {(s.account_id, s.bot_id): s for s in seq["states"]}
        steps = []
        for step in seq["steps"]:
            account, bot, conversation, category, now = step
            steps.append(
                {
                    "account_id": account,
                    "bot_id": bot,
                    "conversation_id": conversation,
                    "category": category,
                    "now": now,
                    "verdict": reference_verdict(states, ledger, step),
                }
            )
        out.append(
            {
                "name": seq["name"],
                "ledger_entries": seq.get("ledger_entries", 100_000),
                "states": [
                    {"hex": state_codec.encode(state_to_avro(s)).hex(), "state": _state_json(s)}
                    for s in seq["states"]
                ],
                "steps": steps,
            }
        )
    return {
        "about": "a gateway holding these states answers these calls, in order, with one "
        "fresh fallback ledger per sequence (verdict, or error unknown_category with "
        "the error's text)",
        "default_model": DEFAULT_PREMIUM_MODEL,
        "sequences": out,
    }


# -- files ---------------------------------------------------------------------------------


def generate() -> dict[str, str]:
    """Every vector file's name -> its text (deterministic)."""
    docs = {
        "partitions.json": partition_vectors(),
        "usage_batches.json": usage_batch_vectors(),
        "control_states.json": control_state_vectors(),
        "cap_hits.json": cap_hit_vectors(),
        "gate_sequences.json": gate_vectors(),
        "conversation_sent.json": conversation_sent_vectors(),
    }
    return {
        name: json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
        for name, doc in docs.items()
    }


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Write every vector file to ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generate().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def stale(directory: Path = DEFAULT_DIR) -> list[str]:
    """The vector files in ``directory`` that are missing or differ from :func:`generate`."""
    out = []
    for name, text in generate().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out
