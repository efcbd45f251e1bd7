"""An account's enforcement history: alerts sent, blocks (and who lifted them), cap periods
and credit grants, read from the sink's ClickHouse tables (and the grants topic's view).

Blocks and cap periods are not stored as such: the sink keeps every enforcement state a
bot went through (``decisions``, one row per version) and every resume (rows with
``resumed_at``). A block is a run of consecutive states of a bot blocked by the same policy;
it ends at its ``blocked_until`` or at the first later state without it (lifted early: by a
resume, recorded with who did it, or by the policy being disabled or changed). A cap period
is a run of states holding the same (category, period, period key); it ends at its
``resumes_at`` or earlier (a grant raised the cap, or the settings changed). Every statement
is parameterised and filtered by the caller's account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from capstream.api.reads import Query, Row
from capstream.streams.records import CapGrantRecord

Kind = Literal["alert", "warning", "block", "cap", "grant"]
KINDS: tuple[str, ...] = ("alert", "warning", "block", "cap", "grant")
LOOKBACK_MS = 31 * 86_400_000
"""States this long before the range are read too, so a block or cap period that began
before it and reaches into it is shown (from its real start)."""
MAX_STATES = 50_000
"""Enforcement states read per request at most (the answer says ``truncated`` if more)."""
_NOTE_KINDS = {"policy_alert": "alert", "policy_warning": "warning", "cap_warning": "warning"}
ACCOUNT_WIDE = "*"


class HistoryEntry(BaseModel):
    """One thing that happened to the account (newest first in a :class:`History`)."""

    kind: Kind
    at_ms: int
    """Sent (alert, warning), started (block, cap period) or granted (grant)."""
    until_ms: int | None = None
    """Block, cap period: when it ended (or will end, if still running); grant: when it stops
    applying."""
    ongoing: bool = False
    """Block, cap period: still in force at the end of what the store holds."""
    bot_id: str | None = None
    """The bot (``*``: every bot of the account); None for cap periods and grants, which
    are the account's."""
    policy_id: str | None = None
    policy_name: str | None = None
    category: str | None = None
    period: str | None = None
    period_key: str | None = None
    lifted_by: str | None = None
    """Block: who resumed the bot (``<name> (key:<id>)`` or ``admin``); cap period: the grant
    that raised the cap; None when it ran its course."""
    lifted_at_ms: int | None = None
    amount_micro: int | None = None
    """Grant: credit added to the cap."""
    by: str | None = None
    """Grant: who granted it."""
    subject: str | None = None
    recipients: list[str] = []
    ref: str
    """The notification id, grant id, or ``<bot>:<version>`` of the state it started at."""


class History(BaseModel):
    """The account's history in ``[from_ms, to_ms)``, newest first."""

    account_id: str
    from_ms: int
    to_ms: int
    bot_id: str | None
    entries: list[HistoryEntry]
    truncated: bool
    """More states or alerts than one answer reads: narrow the range or filter by bot."""


@dataclass
class _Run:
    start: int
    until: int
    ref: str
    end: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def alerts(query: Query, account_id: str, lo: int, hi: int, bot_id: str | None,
           limit: int) -> list[Row]:  # fmt: skip
    """Policy alerts and warnings sent in ``[lo, hi)``, with the bot each was about (where
    the sink recorded it: ``notification_bots``, from migration 7)."""
    params: dict[str, Any] = {"account_id": account_id, "lo": lo, "hi": hi, "limit": limit}
    where_bot = ""
    if bot_id is not None:
        params["bot_id"] = bot_id
        where_bot = "AND b.bot_id IN ({bot_id:String}, '*') "
    return query(
        "SELECT n.notification_id AS notification_id, n.kind AS kind, "
        "n.policy_id AS policy_id, n.subject AS subject, n.recipients AS recipients, "
        "toUnixTimestamp64Milli(n.created_at) AS at_ms, b.bot_id AS bot_id "
        "FROM notifications AS n LEFT JOIN ("
        "  SELECT notification_id, any(bot_id) AS bot_id FROM notification_bots "
        "  WHERE account_id = {account_id:String} GROUP BY notification_id"
        ") AS b ON b.notification_id = n.notification_id "
        "WHERE n.account_id = {account_id:String} "
        "AND n.kind IN ('policy_alert', 'policy_warning', 'cap_warning') "
        "AND n.created_at >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
        "AND n.created_at < fromUnixTimestamp64Milli({hi:Int64}, 'UTC') "
        + where_bot
        + "ORDER BY at_ms DESC, notification_id LIMIT 1 BY notification_id "
        "LIMIT {limit:UInt32}",
        params,
    )


def states(query: Query, account_id: str, lo: int, hi: int, bot_id: str | None) -> list[Row]:
    """Enforcement states and resumes of ``[lo - LOOKBACK_MS, hi)``, per bot by version."""
    params: dict[str, Any] = {
        "account_id": account_id, "lo": max(0, lo - LOOKBACK_MS), "hi": hi,
        "limit": MAX_STATES + 1,
    }  # fmt: skip
    where_bot = ""
    if bot_id is not None:
        params["bot_id"] = bot_id
        where_bot = "AND bot_id IN ({bot_id:String}, '*') "
    return query(
        "SELECT bot_id, version, toUnixTimestamp64Milli(updated_at) AS at_ms, "
        "toUnixTimestamp64Milli(blocked_until) AS blocked_until_ms, block_policy_id, "
        "mapKeys(caps) AS cap_categories, arrayMap(v -> v.1, mapValues(caps)) AS cap_periods, "
        "arrayMap(v -> v.2, mapValues(caps)) AS cap_keys, "
        "arrayMap(v -> toUnixTimestamp64Milli(v.3), mapValues(caps)) AS cap_resumes, "
        "toUnixTimestamp64Milli(resumed_at) AS resumed_at_ms, resumed_by "
        "FROM decisions WHERE account_id = {account_id:String} "
        "AND updated_at >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
        "AND updated_at < fromUnixTimestamp64Milli({hi:Int64}, 'UTC') "
        + where_bot
        + "ORDER BY bot_id, version LIMIT 1 BY bot_id, version LIMIT {limit:UInt32}",
        params,
    )


def _blocks(bot: str, rows: list[Row], resumes: list[tuple[int, str]]) -> list[HistoryEntry]:
    out: list[HistoryEntry] = []
    cur: _Run | None = None

    def close(end: int | None) -> None:
        assert cur is not None
        lifted = None
        if end is not None and end < cur.until:
            lifted = next(((t, who) for t, who in resumes if cur.start <= t <= end), None)
        until = cur.until if end is None else min(end, cur.until)
        out.append(HistoryEntry(
            kind="block", at_ms=cur.start, until_ms=until,
            ongoing=end is None, bot_id=bot, policy_id=cur.extra["policy"],
            lifted_by=lifted[1] if lifted else None, lifted_at_ms=lifted[0] if lifted else None,
            ref=cur.ref,
        ))  # fmt: skip

    for r in rows:
        until, policy, at = r["blocked_until_ms"], r["block_policy_id"], int(r["at_ms"])
        if cur is not None and (until is None or policy != cur.extra["policy"] or at >= cur.until):
            close(min(at, cur.until))
            cur = None
        if until is not None and int(until) > at:
            if cur is None:
                cur = _Run(at, int(until), f"{bot}:{r['version']}", extra={"policy": policy})
            else:
                cur.until = max(cur.until, int(until))
    if cur is not None:
        close(None)
    return out


def _block_entries(
    per_bot: dict[str, list[Row]], resumes: dict[str, list[tuple[int, str]]]
) -> list[HistoryEntry]:
    """Blocks: the account's (``*``), and each bot's own. A bot's state carries its account's
    block while the bot has a state of its own (or in the state it had when it went back to
    following the account): such a run is the account's block, and is not repeated."""
    account = _blocks(
        ACCOUNT_WIDE, per_bot.get(ACCOUNT_WIDE, []), sorted(resumes.get(ACCOUNT_WIDE, []))
    )
    out = list(account)
    for bot, rows in per_bot.items():
        if bot == ACCOUNT_WIDE:
            continue
        for e in _blocks(bot, rows, sorted(resumes.get(bot, []))):
            if not any(
                a.policy_id == e.policy_id and a.at_ms <= e.at_ms < (a.until_ms or e.at_ms + 1)
                for a in account
            ):
                out.append(e)
    return out


def _caps(rows: list[Row]) -> list[tuple[str, str, str, _Run]]:
    out: list[tuple[str, str, str, _Run]] = []
    open_: dict[str, tuple[str, str, _Run]] = {}
    bot = rows[0]["bot_id"] if rows else ""
    for r in rows:
        at = int(r["at_ms"])
        held_caps = zip(
            r["cap_categories"], r["cap_periods"], r["cap_keys"], r["cap_resumes"], strict=True
        )
        now = {str(c): (str(p), str(k), int(u)) for c, p, k, u in held_caps}
        for cat in list(open_):
            period, key, run = open_[cat]
            held = now.get(cat)
            if held is None or held[:2] != (period, key):
                run.end = min(at, run.until)
                out.append((cat, period, key, run))
                del open_[cat]
        for cat, (period, key, until) in now.items():
            if cat not in open_:
                open_[cat] = (period, key, _Run(at, until, f"{bot}:{r['version']}"))
    out.extend((cat, period, key, run) for cat, (period, key, run) in open_.items())
    return out


def history(
    query: Query,
    account_id: str,
    lo: int,
    hi: int,
    *,
    bot_id: str | None,
    kinds: Iterable[str],
    grants: list[CapGrantRecord],
    policy_names: dict[str, str],
    limit: int,
) -> History:
    """The account's history in ``[lo, hi)``: at most ``limit`` entries, newest first."""
    wanted = set(kinds)
    entries: list[HistoryEntry] = []
    truncated = False
    if wanted & {"alert", "warning"}:
        rows = alerts(query, account_id, lo, hi, bot_id, limit + 1)
        truncated |= len(rows) > limit
        for r in rows:
            kind = _NOTE_KINDS.get(str(r["kind"]), "alert")
            if kind not in wanted:
                continue
            entries.append(HistoryEntry(
                kind=kind,
                at_ms=int(r["at_ms"]), bot_id=r["bot_id"] or None, policy_id=r["policy_id"],
                subject=r["subject"], recipients=list(r["recipients"]),
                ref=str(r["notification_id"]),
            ))  # fmt: skip
    if wanted & {"block", "cap"}:
        rows = states(query, account_id, lo, hi, bot_id)
        if len(rows) > MAX_STATES:
            truncated, rows = True, rows[:MAX_STATES]
        per_bot: dict[str, list[Row]] = {}
        resumes: dict[str, list[tuple[int, str]]] = {}
        for r in rows:
            if r["resumed_at_ms"] is not None:
                resumes.setdefault(str(r["bot_id"]), []).append(
                    (int(r["resumed_at_ms"]), str(r["resumed_by"] or ""))
                )
            else:
                per_bot.setdefault(str(r["bot_id"]), []).append(r)
        if "block" in wanted:
            entries.extend(_block_entries(per_bot, resumes))
        if "cap" in wanted:
            entries.extend(_cap_entries(per_bot, grants))
    if "grant" in wanted:
        for g in grants:
            if lo <= g.granted_at_ms < hi:
                entries.append(HistoryEntry(
                    kind="grant", at_ms=g.granted_at_ms, category=g.category, period=g.period,
                    period_key=g.period_key, amount_micro=g.amount_micro, by=g.granted_by,
                    until_ms=g.expires_at_ms, subject=g.note or None, ref=g.grant_id,
                ))  # fmt: skip
    for e in entries:
        if e.policy_id is not None:
            e.policy_name = policy_names.get(e.policy_id)
    # what overlaps the range (a block or cap period from before it that reaches into it too)
    shown = [e for e in entries if e.at_ms < hi and (e.ongoing or (e.until_ms or e.at_ms) >= lo)]
    shown.sort(key=lambda e: (-e.at_ms, e.kind, e.ref))
    truncated |= len(shown) > limit
    return History(
        account_id=account_id, from_ms=lo, to_ms=hi, bot_id=bot_id, entries=shown[:limit],
        truncated=truncated,
    )  # fmt: skip


def _cap_entries(per_bot: dict[str, list[Row]], grants: list[CapGrantRecord]) -> list[HistoryEntry]:
    """Cap periods: the account's (caps are account-wide; ``*``'s states carry every change,
    a bot's only while it has a state of its own), merged over the bots' states for history
    written before bots followed ``*`` (every bot's state then showed the account's caps)."""
    merged: dict[tuple[str, str, str, int], _Run] = {}
    for bot, rows in per_bot.items():
        if ACCOUNT_WIDE in per_bot and bot != ACCOUNT_WIDE:
            continue
        for cat, period, key, run in _caps(rows):
            # the same period seen on several bots: one entry, from the first to the last
            k = next((m for m in merged if m[:3] == (cat, period, key)
                      and _overlap(merged[m], run)), None)  # fmt: skip
            if k is None:
                merged[(cat, period, key, run.start)] = run
            else:
                m = merged[k]
                m.start = min(m.start, run.start)
                if m.end is not None:
                    m.end = None if run.end is None else max(m.end, run.end)
    out = []
    for (cat, period, key, _), run in merged.items():
        lifted = None
        if run.end is not None and run.end < run.until:
            lifted = next((g for g in grants if g.category == cat and g.period == period
                           and g.period_key == key and run.start <= g.granted_at_ms <= run.end),
                          None)  # fmt: skip
        out.append(HistoryEntry(
            kind="cap", at_ms=run.start, until_ms=run.until if run.end is None else run.end,
            ongoing=run.end is None, category=cat, period=period, period_key=key,
            lifted_by=f"grant {lifted.grant_id} by {lifted.granted_by}" if lifted else None,
            lifted_at_ms=run.end if lifted else None, ref=run.ref,
        ))  # fmt: skip
    return out


def _overlap(a: _Run, b: _Run) -> bool:
    a_end = a.until if a.end is None else a.end
    b_end = b.until if b.end is None else b.end
    return a.start <= b_end and b.start <= a_end
