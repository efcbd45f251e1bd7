"""``value_blocks.json``: value-blocks topic records (an end user, API key, team or model
blocked by a per-attribute policy), and gate calls with attributes against them."""

from __future__ import annotations

from typing import Any

from capstream.core.gate import FallbackLedger, value_block_verdict
from capstream.core.models import ACCOUNT_WIDE_BOT, CATEGORY_INDEX, CapStatus, ValueBlock
from capstream.errors import DecodeError
from capstream.gateway.errors import UnknownCategoryError
from capstream.gateway.vectors.common import HOUR, MINUTE, T0, jsonable
from capstream.gateway.vectors.gate_cases import _verdict_json, reference_verdict
from capstream.gateway.vectors.record_cases import a_state, state_json
from capstream.streams.codecs import MAGIC, codec
from capstream.streams.control_wire import state_to_avro
from capstream.streams.value_blocks import decode_value_block, encode_value_block, value_block_key


def _block(bot: str, attribute: str, value: str, until: int, policy: str = "p-user") -> ValueBlock:
    return ValueBlock("acct-1", bot, attribute, value, until, policy)


def block_json(b: ValueBlock) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(
        {
            "account_id": b.account_id,
            "bot_id": b.bot_id,
            "attribute": b.attribute,
            "value": b.value,
            "blocked_until_ms": b.blocked_until_ms,
            "policy_id": b.policy_id,
        }
    )
    return out


Call = tuple[str, str, str, str, int, list[tuple[str, str]]]


def _sequences() -> list[dict[str, Any]]:
    alice = _block("bot-1", "end_user", "alice", T0 + 10 * MINUTE)
    red = _block(ACCOUNT_WIDE_BOT, "team", "red", T0 + HOUR, "p-team")
    a = [("end_user", "alice")]
    daily = CapStatus("daily", "2026-11-18", T0 + 10 * HOUR)
    return [
        {
            "name": "a blocked end user is paused until the block ends, others allowed",
            "states": [a_state()],
            "blocks": [alice],
            "calls": [
                ("acct-1", "bot-1", "c1", "text", T0, a),
                ("acct-1", "bot-1", "c1", "vision", T0 + 10 * MINUTE - 1, a),
                ("acct-1", "bot-1", "c2", "text", T0, [("end_user", "bob")]),
                ("acct-1", "bot-1", "c1", "text", T0, []),
                ("acct-1", "bot-2", "c1", "text", T0, a),  # the block is bot-1's
                ("acct-2", "bot-1", "c1", "text", T0, a),  # another account
                ("acct-1", "bot-1", "c1", "text", T0 + 10 * MINUTE, a),  # ended
                ("acct-1", "bot-1", "c1", "text", T0, [("api_key", "alice")]),  # other attribute
            ],
        },
        {
            "name": "an account-wide value block refuses every bot, even one without a state",
            "states": [a_state(caps={"text": daily})],
            "blocks": [red],
            "calls": [
                ("acct-1", "bot-1", "c1", "text", T0, [("team", "red")]),
                ("acct-1", "bot-new", "c1", "audio", T0, [("end_user", "x"), ("team", "red")]),
                ("acct-1", "bot-1", "c1", "text", T0, [("team", "blue")]),  # capped: fallback
                ("acct-1", "bot-1", "c1", "text", T0 + HOUR, [("team", "red")]),  # skip
            ],
        },
        {
            "name": "the latest record of a value wins and the block ending last answers",
            "states": [],
            "blocks": [
                alice,
                _block("bot-1", "end_user", "alice", T0 + 20 * MINUTE),
                _block("bot-1", "model", "gpt-4o", T0 + 30 * MINUTE, "p-model"),
                _block("bot-1", "end_user", "bob", T0 + 5 * MINUTE),
                _block("bot-1", "end_user", "bob", T0 + MINUTE),  # shortened: latest wins
            ],
            "calls": [
                ("acct-1", "bot-1", "c1", "text", T0 + 15 * MINUTE, a),
                ("acct-1", "bot-1", "c1", "text", T0, [*a, ("model", "gpt-4o")]),
                ("acct-1", "bot-1", "c1", "text", T0 + 2 * MINUTE, [("end_user", "bob")]),
                ("acct-1", "bot-1", "c1", "text", T0 + 20 * MINUTE, a),  # no state: allow
            ],
        },
        {
            "name": "an unknown category is an error with a blocked value too",
            "states": [a_state()],
            "blocks": [alice],
            "calls": [
                ("acct-1", "bot-1", "c1", "video", T0, a),
                ("acct-1", "bot-1", "c1", "Text", T0, [("end_user", "bob")]),
            ],
        },
    ]


def _reference(
    states: dict[tuple[str, str], Any],
    blocks: dict[tuple[str, str, str, str], ValueBlock],
    ledger: FallbackLedger,
    call: Call,
) -> dict[str, Any]:
    """What a gateway answers: a blocked value first (``Gateway.gate``), else as without
    attributes (the gate sequences' reference)."""
    account, bot, conversation, category, now, attributes = call
    held = {(k[1], k[2], k[3]): b for k, b in blocks.items() if k[0] == account}
    if attributes and held:
        if category not in CATEGORY_INDEX:
            return {"error": "unknown_category", "message": str(UnknownCategoryError(category))}
        v = value_block_verdict(held, bot, dict(attributes), now)
        if v is not None:
            return _verdict_json(v)
    return reference_verdict(states, ledger, (account, bot, conversation, category, now))


def value_block_vectors() -> dict[str, Any]:
    block_codec = codec("ValueBlock")
    records = []
    for b in (
        _block("bot-1", "end_user", "alice", T0 + 10 * MINUTE),
        _block(ACCOUNT_WIDE_BOT, "team", "red/blue ü", T0 + HOUR, "p-team"),
        _block("bot/1", "model", "gpt-4o", T0 + 2 * HOUR, "p-model"),
    ):
        value = encode_value_block(b)
        records.append(
            {
                "hex": value.hex(),
                "key": value_block_key(b.account_id, b.bot_id, b.attribute, b.value).decode(),
                "block": block_json(decode_value_block(value)),
            }
        )
    good = encode_value_block(_block("bot-1", "end_user", "alice", T0))
    bad_values: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("not Avro", b"not avro at all"),
        ("unknown fingerprint", MAGIC + bytes(8) + good[10:]),
        ("truncated body", good[:-3]),
        ("empty value", encode_value_block(_block("bot-1", "end_user", "", T0))),
        ("empty attribute", encode_value_block(_block("bot-1", "", "alice", T0))),
        ("empty bot_id", encode_value_block(_block("", "end_user", "alice", T0))),
        ("negative end", encode_value_block(_block("bot-1", "end_user", "alice", -1))),
    ]
    bad = []
    for name, value in bad_values:
        try:
            decode_value_block(value)
        except DecodeError as exc:
            bad.append({"name": name, "hex": value.hex(), "reason": exc.reason})
        else:  # pragma: no cover - a vector that decodes is a bug in this list
            raise AssertionError(f"bad value block {name!r} decoded")
    state_codec = codec("EnforcementState")
    sequences = []
    for seq in _sequences():
        ledger = FallbackLedger(100_000)
        states = {(s.account_id, s.bot_id): s for s in seq["states"]}
        blocks = {(b.account_id, b.bot_id, b.attribute, b.value): b for b in seq["blocks"]}
        steps = []
        for call in seq["calls"]:
            account, bot, conversation, category, now, attributes = call
            steps.append(
                {
                    "account_id": account,
                    "bot_id": bot,
                    "conversation_id": conversation,
                    "category": category,
                    "now": now,
                    "attributes": [list(kv) for kv in attributes],
                    "verdict": _reference(states, blocks, ledger, call),
                }
            )
        sequences.append(
            {
                "name": seq["name"],
                "states": [
                    {"hex": state_codec.encode(state_to_avro(s)).hex(), "state": state_json(s)}
                    for s in seq["states"]
                ],
                "blocks": [encode_value_block(b).hex() for b in seq["blocks"]],
                "steps": steps,
            }
        )
    return {
        "about": "value-blocks topic values (ValueBlock) with their key and the block each "
        "decodes to; values to refuse with the DecodeError reason; gate sequences: a "
        "gateway holding these states and these value blocks (applied in order, the latest "
        "record of a key winning) answers these calls with attributes ([name, value] "
        "pairs), in order, with one fresh fallback ledger per sequence",
        "fingerprint_hex": block_codec.fingerprint.hex(),
        "records": records,
        "bad": bad,
        "sequences": sequences,
    }
