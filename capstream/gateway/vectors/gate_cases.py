"""``gate_sequences.json``: states, then calls in order with the verdict a gateway gives."""

from __future__ import annotations

from typing import Any

from capstream.core.gate import FallbackLedger, gate
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CATEGORY_INDEX,
    DEFAULT_PREMIUM_MODEL,
    FAST_BATCHING_S,
    Action,
    CapStatus,
    EnforcementState,
    Verdict,
)
from capstream.gateway.errors import UnknownCategoryError
from capstream.gateway.vectors.common import HOUR, MINUTE, T0
from capstream.gateway.vectors.record_cases import a_state, state_json
from capstream.streams.codecs import codec
from capstream.streams.control_wire import state_to_avro

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
    """What a gateway answers: the bot's state, else its account-wide state (core ``gate``,
    for the calling bot: its own fallback ledger entries, reply spacing and cap hits), else
    ``allow`` with the default model and 3-second batching (reason ``no_state_yet``)."""
    account, bot, conversation, category, now = step
    state = states.get((account, bot)) or states.get((account, ACCOUNT_WIDE_BOT))
    if category not in CATEGORY_INDEX:  # one error, with a state or without
        return {"error": "unknown_category", "message": str(UnknownCategoryError(category))}
    if state is None:
        return _verdict_json(
            Verdict(
                Action.ALLOW, DEFAULT_PREMIUM_MODEL, FAST_BATCHING_S, None, "no_state_yet", None
            )
        )
    return _verdict_json(gate(state, category, conversation, now, ledger, bot))


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
            "states": [a_state()],
            "steps": _calls("bot-1", ["c1", "c2"], ALL, [T0, T0 + HOUR]),
        },
        {
            "name": "a block pauses every category until it ends, then allows",
            "states": [a_state(blocked_until_ms=T0 + HOUR, block_policy_id="p-hourly")],
            "steps": _calls("bot-1", ["c1"], ALL, [T0, T0 + HOUR - 1, T0 + HOUR, T0 + 2 * HOUR]),
        },
        {
            "name": "a block wins over caps and throttle",
            "states": [
                a_state(
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
            "states": [a_state(caps={"text": daily})],
            "steps": _calls("bot-1", ["c1", "c2", "c1", "c3"], ["text"], around[:2])
            + _calls("bot-1", ["c1"], ALL, around),
        },
        {
            "name": "media caps skip silently; other categories allowed",
            "states": [a_state(caps={"vision": daily, "audio": monthly, "documents": daily})],
            "steps": _calls("bot-1", ["c1", "c2"], ALL, around),
        },
        {
            "name": "monthly text cap uses the monthly text",
            "states": [a_state(caps={"text": monthly})],
            "steps": _calls("bot-1", ["c1", "c1", "c2"], ["text"], [T0, T0 + 299 * HOUR]),
        },
        {
            "name": "fallback is per bot and per cap period",
            "states": [
                a_state(caps={"text": daily}),
                a_state("bot-2", caps={"text": daily}),
                a_state("bot-3", caps={"text": CapStatus("daily", "2026-11-19", T0 + 34 * HOUR)}),
            ],
            "steps": [
                ("acct-1", b, "c1", "text", T0 + i)
                for i, b in enumerate(["bot-1", "bot-2", "bot-3", "bot-1", "bot-2", "bot-3"])
            ],
        },
        {
            "name": "a ledger of 2 entries forgets the oldest conversation",
            "ledger_entries": 2,
            "states": [a_state(caps={"text": daily})],
            "steps": _calls("bot-1", ["c1", "c2", "c1", "c3", "c1", "c2"], ["text"], [T0]),
        },
        {
            "name": "downgraded until local midnight, then the premium model",
            "states": [
                a_state(model="claude-haiku", downgraded_until_ms=T0 + 5 * HOUR),
                a_state(
                    "bot-2",
                    model="claude-haiku",
                    downgraded_until_ms=T0 + 5 * HOUR,
                    premium_model="",
                ),
                a_state(
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
            "states": [a_state(batching_interval_s=60, throttle_reason="strict")],
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
                a_state(
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
            "states": [a_state(batching_interval_s=60, throttle_reason="strict")],
            "steps": [
                ("acct-1", "bot-1", c, "text", T0 + i)
                for i, c in enumerate(["c1", "c2", "c1", "c3", "c1", "c2", "c3"])
            ],
        },
        {
            "name": "unknown bots get the account-wide state, unknown accounts allow",
            "states": [a_state(ACCOUNT_WIDE_BOT, caps={"text": daily}), a_state("bot-9")],
            "steps": [
                ("acct-1", "bot-new", "c1", "text", T0),
                ("acct-1", "bot-new", "c1", "text", T0 + 1),
                ("acct-1", "bot-9", "c1", "text", T0 + 2),
                ("acct-2", "bot-1", "c1", "text", T0 + 3),
                ("acct-2", "bot-1", "c1", "vision", T0 + 4),
            ],
        },
        {
            "name": "bots following the account-wide state: fallback once per bot and "
            "conversation, cap hits and reply spacing of the calling bot",
            "states": [a_state(ACCOUNT_WIDE_BOT, caps={"text": daily})],
            "steps": [
                ("acct-1", "bot-1", "c1", "text", T0),
                ("acct-1", "bot-2", "c1", "text", T0 + 1),
                ("acct-1", "bot-1", "c1", "text", T0 + 2),
                ("acct-1", "bot-2", "c1", "vision", T0 + 3),
                ("acct-1", "bot-3", "c1", "text", T0 + 4),
            ],
        },
        {
            "name": "bots following a throttled account-wide state: replies spaced per bot",
            "states": [
                a_state(
                    ACCOUNT_WIDE_BOT,
                    batching_interval_s=60,
                    throttled_until_ms=T0 + HOUR,
                    throttle_reason="budget_at_risk",
                )
            ],
            "steps": [
                ("acct-1", "bot-1", "c1", "text", T0),
                ("acct-1", "bot-2", "c1", "text", T0 + 1),
                ("acct-1", "bot-1", "c1", "text", T0 + 2),
                ("acct-1", "bot-2", "c1", "vision", T0 + MINUTE + 1),
            ],
        },
        {
            "name": "an unknown category is an error, known or unknown bot",
            "states": [a_state(), a_state("bot-2", caps={"text": daily})],
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
                    {"hex": state_codec.encode(state_to_avro(s)).hex(), "state": state_json(s)}
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
