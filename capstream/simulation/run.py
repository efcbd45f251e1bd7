"""Replays an account's past events through the core twice: the current configuration and
the draft, side by side, in event time.

Per event and per side it is the worker's per-event path (``EventClock``: expiries the
event's time brings, then ``evaluate``) plus one ``gate()`` call: before the event is applied
the simulation asks ``gate()`` what a gateway holding that side's enforcement state would
have answered for this AI call (the bot's state, or the account-wide ``*`` state for a bot
with none yet), with a ``FallbackLedger`` per side. A call answered ``fallback`` (the
fallback text: the first text call of a conversation per cap period), ``skip`` (silently:
later text calls of that conversation, every capped vision/audio/documents call) or
``paused`` (a running block) is a *gated call*; ``allow`` with ``reply_at_ms`` is *delayed*
(throttled: a second reply within a minute waits). The answer is counted with
``gate_outcome`` (``gate()``'s answer and ledger effects, no verdict built).

What a gated call does next is the ``gated`` mode:

* ``drop`` (default, what would have happened): the call is not made, so its usage is not
  counted and it decides nothing.
* ``keep`` (what the worker did with the recorded stream): every event is applied as
  recorded, whatever the gate said. The decisions are then exactly those a worker in
  event-time mode publishes for the same events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from capstream.core import AccountState, Effects, FallbackLedger, UsageEvent
from capstream.core.clock import EventClock
from capstream.core.errors import CoreError
from capstream.core.gate import OUTCOME_DELAYED, OUTCOME_FALLBACK, OUTCOME_SKIP, gate_outcome
from capstream.core.models import CATEGORIES, CATEGORY_INDEX, PolicyScope
from capstream.core.models.vocabulary import PERIOD_INDEX
from capstream.core.series import SERIES_BY_CATEGORY, series_of
from capstream.core.usage import AccountUsage, BotUsage
from capstream.simulation.draft import Config, Draft
from capstream.simulation.source import ColumnChunk, Events, EventSource, Plan
from capstream.simulation.timeline import Timeline

Gated = Literal["drop", "keep"]
Progress = Callable[[int, int], None]
"""Called after each chunk with (events read, events in the range)."""
SAMPLES = 240
"""About this many points per chart series over the range."""


@dataclass(frozen=True, slots=True)
class Chart:
    """What a side's chart follows: a policy's window total, or a category's calendar total."""

    label: str
    kind: str  # "policy" | "per_value" | "daily" | "monthly"
    threshold: int | None
    series: int = 0
    window_ms: int = 0
    scope: str = ""
    bot_id: str | None = None
    period: int = 0
    """A calendar policy's period (1-3: day, week, month; ``PERIOD_INDEX``); 0: a window."""
    policy_id: str = ""
    """A per-attribute policy (``per_value``): its windows are the account's counters whose
    key starts with its id; the chart follows the highest."""


class Side:
    """One configuration being replayed."""

    def __init__(
        self,
        name: str,
        account_id: str,
        config: Config,
        charts: list[Chart],
        *,
        drop: bool,
        on_effects: Callable[[Effects], None] | None = None,
    ) -> None:
        self.name = name
        self.clock = EventClock()
        self.state = AccountState(account_id)
        self.policies = config.policies
        self.settings = config.settings
        self.ledger = FallbackLedger()
        self.timeline = Timeline(config.settings.timezone)
        self.drop = drop
        self.on_effects = on_effects
        self.charts = charts
        self.points: list[list[list[int]]] = [[] for _ in charts]
        self.fallback = self.skip = self.paused = self.delayed = self.refused = 0
        self.events = self.tokens = self.messages = self.conversations = 0
        self.credits = [0, 0, 0, 0]

    def step(self, ev: UsageEvent, t: int) -> None:
        """Gate and apply one event (the per-event path: keep it lean)."""
        clock = self.clock
        if t > clock.now_ms:
            out = clock.advance(t)
            if out:
                self._record(out)
        state = self.state
        try:
            bot = state.bots.get(ev.bot_id)
            es = bot.enforcement if bot is not None else None
            if es is None or es.follows_account:  # the gateway's rule: the "*" state
                es = state.account.enforcement
            if es is not None:  # gate()'s answer without building the verdict
                outcome = gate_outcome(
                    es, ev.category, ev.conversation_id, t, self.ledger, ev.bot_id
                )
                if outcome >= OUTCOME_FALLBACK:
                    if outcome == OUTCOME_SKIP:
                        self.skip += 1
                    elif outcome == OUTCOME_FALLBACK:
                        self.fallback += 1
                    else:
                        self.paused += 1
                    if self.drop:
                        return
                elif outcome == OUTCOME_DELAYED:
                    self.delayed += 1
            out = clock.evaluate(state, ev, self.policies, self.settings)
        except CoreError:
            self.refused += 1  # the worker dead-letters it
            return
        if out:
            self._record(out)
        self.events += 1
        self.tokens += ev.tokens_in + ev.tokens_out
        self.messages += ev.messages
        if ev.conversation_started:
            self.conversations += 1
        self.credits[CATEGORY_INDEX[ev.category]] += ev.credits_micro

    def _record(self, out: list[Effects]) -> None:
        timeline, hook = self.timeline, self.on_effects
        for effects in out:
            if hook is not None:
                hook(effects)
            for s in effects.enforcement:
                timeline.state(s)
            for n in effects.notifications:
                timeline.note(n, n.recipients)

    def sample(self, t: int) -> None:
        """One chart point per series at ``t`` (read after the event at ``t``)."""
        acct = self.state.account
        for chart, points in zip(self.charts, self.points, strict=True):
            if chart.kind == "per_value":
                prefix = chart.policy_id + "\x1f"
                value = 0
                for name, counter in acct.scoped.items():
                    if name.startswith(prefix):
                        value = max(value, counter.ring.total_at(t))
            elif chart.kind == "daily":
                value = acct.day[chart.series]
            elif chart.kind == "monthly":
                value = acct.month_base[chart.series] + acct.day[chart.series]
            else:
                if chart.scope == PolicyScope.ACCOUNT_TOTAL:
                    value = _policy_total(chart, acct, t)
                else:
                    value = 0
                    for bot_id, bot in self.state.bots.items():
                        if chart.bot_id is None or bot_id == chart.bot_id:
                            value = max(value, _policy_total(chart, bot, t))
            points.append([t, value])

    def report(self, end_ms: int) -> dict[str, Any]:
        return {
            **self.timeline.finish(end_ms),
            "gated": {
                "fallback": self.fallback,
                "skip": self.skip,
                "paused": self.paused,
                "delayed": self.delayed,
                "total": self.fallback + self.skip + self.paused,
            },
            "refused": self.refused,
            "usage": {
                "events": self.events,
                "tokens": self.tokens,
                "messages": self.messages,
                "conversations": self.conversations,
                "credits_micro": dict(zip(CATEGORIES, self.credits, strict=True)),
            },
            "charts": [
                {"label": c.label, "kind": c.kind, "threshold": c.threshold, "points": p}
                for c, p in zip(self.charts, self.points, strict=True)
            ],
        }


def _policy_total(chart: Chart, usage: AccountUsage | BotUsage, t: int) -> int:
    """What a policy counts at ``t``: its window's total, or its calendar period's."""
    if chart.period:
        return max(0, usage.calendar_total(chart.series, chart.period, t))
    ring = usage.rings.get((chart.series, chart.window_ms))
    return ring.total_at(t) if ring is not None else 0


def charts_for(draft: Draft, config: Config) -> list[Chart]:
    """The series a side's chart follows: the draft policy's window (the policy as that side
    has it), or each category the settings cap, daily and monthly."""
    p = draft.policy
    if p is not None:
        pid = draft.replaces or p.policy_id
        held = next((q for q in config.policies.policies if q.policy_id == pid), None)
        if held is None:
            return []
        if held.per is not None:
            return [
                Chart(
                    f"{held.metric}{' ' + held.category if held.category else ''} in "
                    f"{held.window_seconds}s (highest {held.per.value})",
                    "per_value", held.threshold, policy_id=held.policy_id,
                )
            ]  # fmt: skip
        span = f"this {held.period}" if held.period else f"in {held.window_seconds}s"
        return [
            Chart(
                f"{held.metric}{' ' + held.category if held.category else ''} {span} "
                f"({held.scope})",
                "policy", held.threshold, series_of(held.metric, held.category),
                held.window_seconds * 1000, held.scope, held.bot_id,
                PERIOD_INDEX[held.period] if held.period else 0,
            )
        ]  # fmt: skip
    out = []
    shown = draft.settings.caps if draft.settings is not None else {}
    for cat in CATEGORIES:
        caps = config.settings.caps.get(cat)
        if cat not in shown and caps is None:
            continue
        series = SERIES_BY_CATEGORY + CATEGORY_INDEX[cat]
        daily = caps.daily_micro if caps is not None else None
        monthly = caps.monthly_micro if caps is not None else None
        out.append(Chart(f"{cat} credits today", "daily", daily or None, series))
        out.append(Chart(f"{cat} credits this month", "monthly", monthly or None, series))
    return out


def replay(sides: list[Side], events: Events, next_sample: int, every: int) -> int:
    """One chunk through ``sides`` (both, or the one this process runs), with a chart point
    per side every ``every`` ms of event time; the next sampling time."""
    if isinstance(events, ColumnChunk):
        return _replay_columns(sides, events.columns, events.account_id, next_sample, every)
    for ev in events:
        next_sample = _step(sides, ev, next_sample, every)
    return next_sample


def _replay_columns(
    sides: list[Side], columns: list[Any], account_id: str, next_sample: int, every: int
) -> int:
    """:func:`replay` of a column chunk, each event built here: compiled, a direct call to
    the event's constructor (``map(UsageEvent, *columns)`` parsed its 12 arguments and
    advanced 11 iterators per event)."""
    ids: list[str] = columns[0]
    bots: list[str] = columns[1]
    conversations: list[str] = columns[2]
    categories: list[str] = columns[3]
    models: list[str] = columns[4]
    tokens_in: list[int] = columns[5]
    tokens_out: list[int] = columns[6]
    messages: list[int] = columns[7]
    started: list[bool] = columns[8]
    credits: list[int] = columns[9]
    times: list[int] = columns[10]
    attributes: list[dict[str, str]] | None = columns[11] if len(columns) > 11 else None
    for i in range(len(ids)):
        ev = UsageEvent(
            ids[i], account_id, bots[i], conversations[i], categories[i], models[i],
            tokens_in[i], tokens_out[i], messages[i], started[i], credits[i], times[i],
            attributes[i] if attributes is not None else None,
        )  # fmt: skip
        next_sample = _step(sides, ev, next_sample, every)
    return next_sample


def _step(sides: list[Side], ev: UsageEvent, next_sample: int, every: int) -> int:
    """One event through ``sides``, a chart point after it when one is due; the next
    sampling time."""
    t = ev.occurred_at_ms
    for side in sides:
        side.step(ev, t)
    if t >= next_sample:
        for side in sides:
            side.sample(t)
        next_sample = t - t % every + every
    return next_sample


def sample_every(source: EventSource) -> int:
    """The chart's step: about ``SAMPLES`` points over the range, at least a minute."""
    return max(60_000, (source.to_ms - source.from_ms) // SAMPLES)


def simulate(
    source: EventSource,
    current: Config,
    drafted: Config,
    draft: Draft,
    *,
    gated: Gated = "drop",
    progress: Progress | None = None,
    on_effects: dict[str, Callable[[Effects], None]] | None = None,
    plan: Plan | None = None,
    processes: int | None = None,
) -> dict[str, Any]:
    """Replay ``source`` through both configurations; the report (JSON-ready).

    ``processes``: 2 runs the draft side in a second process (``parallel``), 1 both sides
    here; None (default) chooses: two where it pays (``parallel.use_two``)."""
    if gated not in ("drop", "keep"):
        raise ValueError("gated must be 'drop' or 'keep'")
    if processes not in (None, 1, 2):
        raise ValueError("processes must be 1, 2 or None")
    hooks = on_effects or {}
    account_id = source.account_id
    drop = gated == "drop"
    if plan is None:
        plan = source.plan()
    from capstream.simulation import parallel

    if processes == 2 or (processes is None and parallel.use_two(source, drafted, hooks, plan)):
        parallel.check_usable(source, drafted, hooks)
        cur = Side("current", account_id, current, charts_for(draft, current), drop=drop,
                   on_effects=hooks.get("current"))  # fmt: skip
        simulated = parallel.run_two(
            source, plan, cur, drafted, charts_for(draft, drafted), drop=drop, progress=progress
        )
        return _result(source, current, plan, gated, draft, cur.report(source.to_ms), simulated)
    sides = [
        Side(name, account_id, config, charts_for(draft, config), drop=drop,
             on_effects=hooks.get(name))
        for name, config in (("current", current), ("draft", drafted))
    ]  # fmt: skip
    every = sample_every(source)
    next_sample = source.from_ms
    done = 0
    if progress is not None:
        progress(0, plan.total)
    for chunk in source.chunks(plan):
        next_sample = replay(sides, chunk, next_sample, every)
        done += len(chunk)
        if progress is not None:
            progress(done, plan.total)
    cur, dra = sides
    return _result(
        source, current, plan, gated, draft, cur.report(source.to_ms), dra.report(source.to_ms)
    )


def _result(
    source: EventSource,
    current: Config,
    plan: Plan,
    gated: Gated,
    draft: Draft,
    cur: dict[str, Any],
    dra: dict[str, Any],
) -> dict[str, Any]:
    return {
        "account_id": source.account_id,
        "from_ms": source.from_ms,
        "to_ms": source.to_ms,
        "timezone": current.settings.timezone,
        "events": plan.total,
        "gated_mode": gated,
        "draft": draft.describe(),
        "current": cur,
        "simulated": dra,
    }
