"""The gateway's question before each AI call: allow (model, batching), fallback, skip, paused.

Rules, in order:

1. A running policy block: ``paused`` (reason ``policy_block:<policy_id>``).
2. A capped category (until its ``resumes_at_ms``): text gets the tenant's fallback text
   once per conversation per cap period (``fallback``), then ``skip``; vision, audio and
   documents are always skipped silently. Both carry a :class:`CapHit` for the feed row.
3. Otherwise ``allow``: the downgrade model until ``downgraded_until_ms``, then the premium
   one; 3-second batching, or 60 s while throttled (strict, or smart while the throttle
   holds). Throttled, a conversation gets at most one reply per minute: a second call within
   60 s of the last allowed reply gets ``reply_at_ms`` (hold the batch until then).

The common case (no block, no throttle, category not capped) is answered from verdicts
precomputed in the :class:`EnforcementState`: one comparison and one dict lookup.

Before these, a gateway asks :func:`value_block_verdict` when the call names attributes and
its account has value blocks (a per-attribute policy blocked one end user, API key, team or
model: :class:`ValueBlock`): a call of a blocked value is ``paused`` like a bot's block.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

from mypy_extensions import mypyc_attr

from capstream.core.errors import CoreError
from capstream.core.messages import cap_reason
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CATEGORY_INDEX,
    DEFAULT_PREMIUM_MODEL,
    FAST_BATCHING_S,
    THROTTLED_BATCHING_S,
    Action,
    CapHit,
    CapPeriod,
    Category,
    EnforcementState,
    ValueBlock,
    Verdict,
)

REPLY_SPACING_MS: Final = 60_000
DEFAULT_LEDGER_ENTRIES: Final = 100_000


@mypyc_attr(allow_interpreted_subclasses=True)  # the gateway's thread-safe ledger
class FallbackLedger:
    """What a gateway remembers between calls, in bounded memory.

    Which (account, bot, conversation, cap period) already got the fallback text, and, while
    throttled, when each conversation last got a reply. Each map keeps at most
    ``max_entries`` keys and forgets the oldest first (a forgotten conversation may get the
    fallback text once more). The maps are ``OrderedDict``s: forgetting the oldest is O(1)
    (a plain dict's first key, after many deletions at its front, is found by scanning the
    deleted slots: ~25 us per forgotten key at 100,000 entries, measured in a simulation).

    A reply more than :data:`REPLY_SPACING_MS` old delays nothing, so the replies are kept
    in two generations, each a spacing long: when a reply comes a spacing after the current
    generation began, the older one is dropped whole (everything in it is over a minute
    old) and the current one becomes the older. The maps hold the last one or two minutes
    of replies, not the last ``max_entries``: every lookup of a throttled call hits a small
    map, and no reply is looked up again to be forgotten (a simulation's replay spent a
    fifth of its time looking up 50,000 three-string keys, then a tenth deleting stale ones
    key by key; see the simulation README). Answers are unchanged while calls come in time
    order, as they do.
    """

    __slots__ = ("_older", "_replies", "_sent", "_turn_at_ms", "max_entries")

    def __init__(self, max_entries: int = DEFAULT_LEDGER_ENTRIES) -> None:
        if max_entries < 1:
            raise CoreError("a fallback ledger needs room for at least one entry")
        self.max_entries = max_entries
        self._sent: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
        self._replies: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        """The current generation of replies, oldest first."""
        self._older: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        """The generation before, oldest first (all older than the current one's)."""
        self._turn_at_ms = 0
        """When the current generation is a spacing old (the next reply then turns them)."""

    def claim_fallback(self, key: tuple[str, str, str, str]) -> bool:
        """True the first time ``key`` is claimed (send the text), False afterwards."""
        sent = self._sent
        if key in sent:
            return False
        sent[key] = None
        if len(sent) > self.max_entries:
            sent.popitem(last=False)
        return True

    def last_reply(self, key: tuple[str, str, str]) -> int | None:
        """When the conversation ``key`` last got an allowed reply while throttled."""
        at = self._replies.get(key)
        return at if at is not None else self._older.get(key)

    def record_reply(self, key: tuple[str, str, str], at_ms: int) -> None:
        replies = self._replies
        if at_ms >= self._turn_at_ms:  # the older generation is over a minute old: dropped
            self._older = replies
            replies = self._replies = OrderedDict()
            self._turn_at_ms = at_ms + REPLY_SPACING_MS
        older = self._older
        # Re-inserted, the most recent stays last (move_to_end is a method call from
        # compiled code; these are slots).
        if key in replies:
            del replies[key]
        elif key in older:
            del older[key]
        replies[key] = at_ms
        if len(replies) + len(older) > self.max_entries:
            (older if older else replies).popitem(last=False)

    def __len__(self) -> int:
        return len(self._sent) + len(self._replies) + len(self._older)


def gate(
    state: EnforcementState,
    category: str,
    conversation_id: str,
    now: int,
    ledger: FallbackLedger,
    bot_id: str | None = None,
) -> Verdict:
    """Decide one AI call of ``category`` in ``conversation_id`` at ``now`` (epoch ms) by bot
    ``bot_id`` (default: the state's bot; a bot that follows its account is answered from the
    ``*`` state, and its fallback ledger entries and cap hits are still its own)."""
    if now < state._fast_until_ms:
        verdict = state._fast.get(category)
        if verdict is not None:
            return verdict
    return _gate_slow(state, category, conversation_id, now, ledger, bot_id or state.bot_id)


OUTCOME_ALLOW: Final = 0
OUTCOME_DELAYED: Final = 1
"""Allowed with ``reply_at_ms`` (throttled: the conversation got its reply this minute)."""
OUTCOME_FALLBACK: Final = 2
OUTCOME_SKIP: Final = 3
OUTCOME_PAUSED: Final = 4


def gate_outcome(
    state: EnforcementState,
    category: str,
    conversation_id: str,
    now: int,
    ledger: FallbackLedger,
    bot_id: str | None = None,
) -> int:
    """What :func:`gate` answers, as one of the ``OUTCOME_*`` codes, with the same effect on
    ``ledger``, without building the verdict (its cap hit, reason and text): for callers
    that only count outcomes (the simulation, twice per replayed event)."""
    if now < state._fast_until_ms:
        verdict = state._fast.get(category)
        if verdict is not None:  # precomputed: paused (a block), or allowed without a wait
            return OUTCOME_PAUSED if verdict.action is Action.PAUSED else OUTCOME_ALLOW
    if category not in CATEGORY_INDEX:
        raise CoreError(f"unknown category {category!r}: use one of {list(CATEGORY_INDEX)}")
    blocked = state.blocked_until_ms
    if blocked is not None and now < blocked:
        return OUTCOME_PAUSED
    bot = bot_id or state.bot_id
    cap = state.caps.get(category)
    if cap is not None and now < cap.resumes_at_ms:
        if category == Category.TEXT and ledger.claim_fallback(
            (state.account_id, bot, conversation_id, cap.period_key)
        ):
            return OUTCOME_FALLBACK
        return OUTCOME_SKIP
    throttled_until = state.throttled_until_ms
    if state.batching_interval_s < THROTTLED_BATCHING_S or (
        throttled_until is not None and now >= throttled_until
    ):
        return OUTCOME_ALLOW
    key = (state.account_id, bot, conversation_id)
    last = ledger.last_reply(key)
    if last is not None and now - last < REPLY_SPACING_MS:
        return OUTCOME_DELAYED
    ledger.record_reply(key, now)
    return OUTCOME_ALLOW


def _gate_slow(
    s: EnforcementState,
    category: str,
    conversation_id: str,
    now: int,
    ledger: FallbackLedger,
    bot_id: str,
) -> Verdict:
    if category not in CATEGORY_INDEX:
        raise CoreError(f"unknown category {category!r}: use one of {list(CATEGORY_INDEX)}")
    blocked = s.blocked_until_ms
    if blocked is not None and now < blocked:
        return s._paused
    cap = s.caps.get(category)
    if cap is not None and now < cap.resumes_at_ms:
        hit = CapHit(
            s.account_id,
            bot_id,
            conversation_id,
            category,
            cap.period,
            cap.period_key,
            now,
            f"{bot_id}/{conversation_id}/{category}/{now}",  # stable: a retry has the same id
        )
        reason = cap_reason(cap.period, category)
        if category == Category.TEXT and ledger.claim_fallback(
            (s.account_id, bot_id, conversation_id, cap.period_key)
        ):
            monthly = cap.period == CapPeriod.MONTHLY
            text = s.fallback_text_monthly if monthly else s.fallback_text_daily
            return Verdict(Action.FALLBACK, None, 0, text, reason, hit, None, cap.resumes_at_ms)
        return Verdict(Action.SKIP, None, 0, None, reason, hit, None, cap.resumes_at_ms)

    downgraded = s.downgraded_until_ms
    model = s.model
    down = False
    if downgraded is not None:
        if now < downgraded:
            down = True
        else:  # local midnight passed before a new state arrived: premium again
            model = s.premium_model or DEFAULT_PREMIUM_MODEL
    throttled_until = s.throttled_until_ms
    throttled = s.batching_interval_s >= THROTTLED_BATCHING_S and (
        throttled_until is None or now < throttled_until
    )
    if not throttled:
        return Verdict(
            Action.ALLOW, model, FAST_BATCHING_S, None, _DOWNGRADED if down else None, None
        )
    reason = _throttled_reason(s.throttle_reason, down)
    key = (s.account_id, bot_id, conversation_id)
    last = ledger.last_reply(key)
    if last is not None and now - last < REPLY_SPACING_MS:
        return Verdict(
            Action.ALLOW, model, THROTTLED_BATCHING_S, None, reason, None,
            last + REPLY_SPACING_MS,
        )  # fmt: skip
    ledger.record_reply(key, now)
    return Verdict(Action.ALLOW, model, THROTTLED_BATCHING_S, None, reason, None)


_DOWNGRADED: Final = "downgraded"
_THROTTLED: dict[str | None, tuple[str, str]] = {}
"""Per throttle reason, the verdict's reason without and with the downgrade (built once:
a throttled state takes this path on every call)."""


def _throttled_reason(throttle_reason: str | None, downgraded: bool) -> str:
    """``throttled:<reason>``, after ``downgraded;`` while the downgrade holds."""
    reasons = _THROTTLED.get(throttle_reason)
    if reasons is None:
        plain = f"throttled:{throttle_reason}"
        reasons = (plain, f"{_DOWNGRADED};{plain}")
        if len(_THROTTLED) < 64:  # the core's three reasons; a state from elsewhere, bounded
            _THROTTLED[throttle_reason] = reasons
    return reasons[1] if downgraded else reasons[0]


def value_block_verdict(
    blocks: Mapping[tuple[str, str, str], ValueBlock],
    bot_id: str,
    attributes: Mapping[str, str],
    now: int,
) -> Verdict | None:
    """``paused`` if one of the call's ``attributes`` (name -> value; ``model`` for a policy
    counted per model) is blocked at ``now`` for ``bot_id`` or for every bot of its account
    (``blocks``: the account's, keyed (bot or ``*``, attribute, value)), else None. Of
    several blocks the one ending last answers (``resumes_at_ms``: when every one has ended);
    the reason names its policy as a bot's block does (``policy_block:<policy_id>``)."""
    found: ValueBlock | None = None
    for attribute, value in attributes.items():
        for bot in (bot_id, ACCOUNT_WIDE_BOT):
            b = blocks.get((bot, attribute, value))
            if (
                b is not None
                and now < b.blocked_until_ms
                and (found is None or b.blocked_until_ms > found.blocked_until_ms)
            ):
                found = b
    if found is None:
        return None
    reason = f"policy_block:{found.policy_id}"
    return Verdict(Action.PAUSED, None, 0, None, reason, None, None, found.blocked_until_ms)
