"""What the core decides and reports: cap states, enforcement states, verdicts, cap hits,
feed rows and notifications (read-only by contract; see each class)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from capstream.core.models.vocabulary import CATEGORIES, NEVER, THROTTLED_BATCHING_S, Action


@dataclass(slots=True, init=False, eq=False)
class CapStatus:
    """A capped category: which cap, for which local period, and when it resumes.

    Read-only by convention. ``__init__``, ``__eq__`` and ``__hash__`` are written by hand:
    compiled, unlike generated ones (the core builds and compares these per capped event).
    """

    period: str
    period_key: str
    resumes_at_ms: int

    def __init__(self, period: str, period_key: str, resumes_at_ms: int) -> None:
        self.period = period
        self.period_key = period_key
        self.resumes_at_ms = resumes_at_ms

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CapStatus):
            return NotImplemented
        return (
            self.resumes_at_ms == other.resumes_at_ms
            and self.period == other.period
            and self.period_key == other.period_key
        )

    def __hash__(self) -> int:
        return hash((self.period, self.period_key, self.resumes_at_ms))


@dataclass(slots=True)
class CapHit:
    """An AI attempt refused by a cap; the gateway reports it so the feed row counts it.

    Not frozen (gate() builds one per refused call and frozen construction costs ~3x);
    treat it as read-only.
    """

    account_id: str
    bot_id: str
    conversation_id: str
    category: str
    period: str
    period_key: str
    occurred_at_ms: int
    hit_id: str


@dataclass(slots=True, init=False)
class Verdict:
    """What the gateway does with one AI call.

    ``action`` (an :class:`Action`; a string given is turned into one): ``allow`` (use
    ``model`` with ``batching_interval_s``), ``fallback`` (send ``text`` instead), ``skip``
    (do nothing, silently) or ``paused`` (a policy block).
    ``reply_at_ms`` (added; throttled only): the conversation already got its reply this
    minute; hold the batch and reply at that instant, not before. ``resumes_at_ms`` (added;
    refusals only): when the refusal ends (the block's end for ``paused``, the cap period's
    end for ``fallback`` and ``skip``), so a gateway can say "back at 00:00"; None when
    unknown (a fail-closed gateway's ``control_unavailable``).

    Read-only by contract: gate() hands out shared, precomputed instances on its fast path
    (not frozen because frozen construction would triple the cost of the slow paths).
    """

    action: Action
    model: str | None
    batching_interval_s: int
    text: str | None
    reason: str | None
    cap_hit: CapHit | None
    reply_at_ms: int | None
    resumes_at_ms: int | None

    def __init__(  # by hand: compiled, unlike a generated one
        self,
        action: Action | str,
        model: str | None,
        batching_interval_s: int,
        text: str | None,
        reason: str | None,
        cap_hit: CapHit | None,
        reply_at_ms: int | None = None,
        resumes_at_ms: int | None = None,
    ) -> None:
        self.action = action if type(action) is Action else Action(action)
        self.model = model
        self.batching_interval_s = batching_interval_s
        self.text = text
        self.reason = reason
        self.cap_hit = cap_hit
        self.reply_at_ms = reply_at_ms
        self.resumes_at_ms = resumes_at_ms


_NOT_PAUSED: Final = Verdict(Action.PAUSED, None, 0, None, "policy_block:None", None, None, None)
"""``EnforcementState._paused`` of a state without a block (built once, not per state)."""


@dataclass(slots=True, init=False)
class EnforcementState:
    """A bot's whole enforcement state (control topic value); ``version`` increments on change.

    ``premium_model`` (added field) is the model to return to when ``downgraded_until_ms``
    passes; empty means the built-in default premium model. Fields starting with ``_`` are
    derived caches for :func:`gate`, computed at construction and not part of the wire format.
    Read-only by convention (not frozen: a frozen dataclass's generated ``__init__`` runs
    interpreted even when compiled, ~3 us per state; this one is written by hand).
    """

    account_id: str
    bot_id: str
    version: int
    updated_at_ms: int
    blocked_until_ms: int | None
    block_policy_id: str | None
    model: str
    downgraded_until_ms: int | None
    batching_interval_s: int
    throttled_until_ms: int | None
    throttle_reason: str | None
    caps: dict[str, CapStatus]
    plan: str
    fallback_text_daily: str
    fallback_text_monthly: str
    premium_model: str = ""
    follows_account: bool = field(init=False, repr=False, compare=False)
    """Not on the wire: this bot follows its account's ``*`` state from this state on (see
    ``core.enforcement``); its content is the account's, and a tombstone of its key follows
    it on the control topic."""
    _fast_until_ms: int = field(init=False, repr=False, compare=False)
    _fast: dict[str, Verdict] = field(init=False, repr=False, compare=False)
    _paused: Verdict = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        account_id: str,
        bot_id: str,
        version: int,
        updated_at_ms: int,
        blocked_until_ms: int | None,
        block_policy_id: str | None,
        model: str,
        downgraded_until_ms: int | None,
        batching_interval_s: int,
        throttled_until_ms: int | None,
        throttle_reason: str | None,
        caps: dict[str, CapStatus],
        plan: str,
        fallback_text_daily: str,
        fallback_text_monthly: str,
        premium_model: str = "",
    ) -> None:
        self.account_id = account_id
        self.bot_id = bot_id
        self.version = version
        self.updated_at_ms = updated_at_ms
        self.blocked_until_ms = blocked_until_ms
        self.block_policy_id = block_policy_id
        self.model = model
        self.downgraded_until_ms = downgraded_until_ms
        self.batching_interval_s = batching_interval_s
        self.throttled_until_ms = throttled_until_ms
        self.throttle_reason = throttle_reason
        self.caps = caps
        self.plan = plan
        self.fallback_text_daily = fallback_text_daily
        self.fallback_text_monthly = fallback_text_monthly
        self.premium_model = premium_model
        self.follows_account = False
        # Precompute the verdicts that need neither the ledger nor the clock beyond one
        # deadline, so gate() is a comparison and a dict lookup on the common path.
        if self.blocked_until_ms is None and self.block_policy_id is None:
            paused = _NOT_PAUSED  # the same content, shared (gate() reads it only when blocked)
        else:
            paused = Verdict(
                Action.PAUSED, None, 0, None, f"policy_block:{self.block_policy_id}", None,
                None, self.blocked_until_ms,
            )  # fmt: skip
        fast: dict[str, Verdict] = {}
        until = NEVER
        if self.blocked_until_ms is not None:
            fast = dict.fromkeys(CATEGORIES, paused)
            until = self.blocked_until_ms
        elif self.batching_interval_s < THROTTLED_BATCHING_S:
            reason = None
            if self.downgraded_until_ms is not None:
                until = self.downgraded_until_ms
                reason = "downgraded"
            allow = Verdict(Action.ALLOW, self.model, self.batching_interval_s, None, reason, None)
            fast = {c: allow for c in CATEGORIES if c not in self.caps}
        self._fast_until_ms = until
        self._fast = fast
        self._paused = paused

    def fast_verdict(self, category: str, now: int) -> Verdict | None:
        """:func:`gate`'s first step: the verdict precomputed for ``category`` if it holds at
        ``now`` (epoch ms; ``-1``: not read yet, then only a verdict without an end), else
        None (decide with :func:`gate`). What a gateway answers most calls with."""
        until = self._fast_until_ms
        if until == NEVER or 0 <= now < until:
            return self._fast.get(category)
        return None


@dataclass(frozen=True, slots=True)
class ValueBlock:
    """One attribute value blocked by a per-attribute policy (``Policy.per``): gateways refuse
    calls of ``bot_id`` (``*``: every bot of the account, an ``account_total`` policy) whose
    ``attribute`` (``end_user``, ``api_key``, ``team`` or ``model``) is ``value`` until
    ``blocked_until_ms``. Made only when a value's block starts (rare: frozen is fine)."""

    account_id: str
    bot_id: str
    attribute: str
    value: str
    blocked_until_ms: int
    policy_id: str


@dataclass(frozen=True, slots=True)
class FeedRow:
    """The amber row of one conversation for one local day and category; attempts roll up.

    ``panel_cta`` (added): the call to action of the dashboard panel, None for a daily cap
    on a paid plan (it restores itself at midnight). ``recent_hit_ids`` (added) makes
    re-applying a recently applied hit a no-op.
    """

    account_id: str
    bot_id: str
    conversation_id: str
    local_day: str
    category: str
    period: str
    attempts: int
    message: str
    cta: str | None
    panel_cta: str | None = None
    last_hit_ms: int = 0
    recent_hit_ids: tuple[str, ...] = ()


@dataclass(slots=True, init=False)
class Notification:
    """Something to tell a person; ``notification_id`` is deterministic (send each id once).

    Read-only by convention (``__init__`` by hand: compiled, unlike a generated one)."""

    notification_id: str
    account_id: str
    kind: str
    policy_id: str | None
    recipients: tuple[str, ...]
    subject: str
    body: str
    created_at_ms: int
    window_start_ms: int | None
    bot_id: str | None
    """The bot a policy alert is about (``*``: every bot, an ``account_total`` policy)."""
    previous_ids: tuple[str, ...]
    """Ids the same notification had in earlier releases (the notifier treats one already in
    its sent-log, for the same account, as this notification)."""
    attribute: str | None
    """A per-attribute policy's alert: the attribute counted per value (``Policy.per``)."""
    attribute_value: str | None
    """A per-attribute policy's alert: the value that crossed (blocked alone)."""

    def __init__(
        self,
        notification_id: str,
        account_id: str,
        kind: str,
        policy_id: str | None,
        recipients: tuple[str, ...],
        subject: str,
        body: str,
        created_at_ms: int,
        window_start_ms: int | None,
        bot_id: str | None = None,
        previous_ids: tuple[str, ...] = (),
        attribute: str | None = None,
        attribute_value: str | None = None,
    ) -> None:
        self.notification_id = notification_id
        self.account_id = account_id
        self.kind = kind
        self.policy_id = policy_id
        self.recipients = recipients
        self.subject = subject
        self.body = body
        self.created_at_ms = created_at_ms
        self.window_start_ms = window_start_ms
        self.bot_id = bot_id
        self.previous_ids = previous_ids
        self.attribute = attribute
        self.attribute_value = attribute_value
