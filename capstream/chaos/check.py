"""The end-of-run checker: what the pipeline holds against what was published.

Ground truth is the generator (every event the run meant to publish, in each partition's
order, which one idempotent producer keeps) and the decision core walking those events in
event time (``bench.truth.capstream_truth``). The checker never looks at what the run
*did* publish: a record lost anywhere, before or after the broker, makes it fail (the
negative control drops one on purpose).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from capstream.bench.kafka import read_all
from capstream.bench.truth import capstream_truth
from capstream.core import (
    AccountUsage,
    BotUsage,
    Notification,
    PolicySet,
    TenantSettings,
    UsageEvent,
    day_period,
    month_period,
)
from capstream.core.models import CATEGORY_INDEX
from capstream.sinks.sql import run_sql
from capstream.streams.control_wire import decode_state, encode_state, state_to_avro
from capstream.streams.records import DeadLetterRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: what must hold, what it should be, what it is."""

    check: str
    expected: str
    got: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Totals = dict[tuple[str, str, str, str], list[int]]
"""(account, bot or '*', 'day'|'month', period key) -> the 8 series' totals."""


def period_totals(events: Iterable[UsageEvent], timezone: Mapping[str, str]) -> Totals:
    """What the worker's tables must hold: the totals of every account and bot per day and
    month (in the account's time zone) of the 8 series (tokens, messages, conversations,
    credits, credits per category)."""
    out: Totals = defaultdict(lambda: [0] * 8)
    for e in events:
        zone = timezone[e.account_id]
        vec = [e.tokens_in + e.tokens_out, e.messages, int(e.conversation_started),
               e.credits_micro, 0, 0, 0, 0]  # fmt: skip
        vec[4 + CATEGORY_INDEX[e.category]] = e.credits_micro
        for who in (e.bot_id, "*"):
            for kind, key in (("day", day_period(e.occurred_at_ms, zone).key),
                              ("month", month_period(e.occurred_at_ms, zone).key)):  # fmt: skip
                row = out[(e.account_id, who, kind, key)]
                for i, v in enumerate(vec):
                    row[i] += v
    return out


def totals_diffs(
    settings: Settings, group: str, want: Totals, touched: set[tuple[str, str]]
) -> tuple[int, list[str]]:
    """(values checked, what differs) between the day and month totals of every account and
    bot in the worker's tables (their changelogs' last values) and ``want``. ``touched``:
    the (account, bot) pairs of the stream; each must have its values."""
    latest: dict[bytes, bytes] = {}
    for table in ("accounts", "bots"):
        for part in read_all(settings, f"{group}-{table}-changelog"):
            for _, key, value in part:
                if key is not None and value is not None and not key.startswith(b"\xff"):
                    latest[table.encode() + b":" + key] = value
    checked, wrong = 0, []
    seen: set[tuple[str, str]] = set()
    for key, value in latest.items():
        usage: AccountUsage | BotUsage
        if key.startswith(b"bots:"):
            usage = BotUsage.from_bytes(value)
            who = usage.bot_id
        else:
            usage = AccountUsage.from_bytes(value)
            who = "*"
        seen.add((usage.account_id, who))
        for kind, period_key, totals in (("day", usage.day_key, usage.day),
                                         ("month", usage.month_key, usage.month)):  # fmt: skip
            expected = want.get((usage.account_id, who, kind, period_key), [0] * 8)
            checked += 1
            if totals != expected:
                wrong.append(f"{usage.account_id}/{who} {kind} {period_key}: events "
                             f"{list(totals)} want {expected}")  # fmt: skip
    must = touched | {(a, "*") for a, _ in touched}
    wrong.extend(f"{a}/{b}: no value in the tables" for a, b in sorted(must - seen))
    return checked, wrong


@dataclass(frozen=True, slots=True)
class Truth:
    """What the pipeline must hold at the end of a run."""

    events: int
    credits: int
    states: Mapping[tuple[str, str], Any]
    notifications: Counter[str]
    """Notification id -> how many times the core emitted it (1 each)."""
    malformed: frozenset[tuple[int, int]]
    """(partition, offset) of every malformed record the run produced."""
    totals: Totals
    touched: set[tuple[str, str]]


def truth(
    by_partition: Sequence[Sequence[UsageEvent]],
    policies: Mapping[str, PolicySet],
    settings: Mapping[str, TenantSettings],
    malformed: set[tuple[int, int]],
    timezone: Mapping[str, str],
) -> Truth:
    notes: list[Notification] = []
    cut = [len(p) for p in by_partition]
    states = capstream_truth(by_partition, cut, policies, settings, notes)
    return Truth(
        events=sum(cut),
        credits=sum(e.credits_micro for p in by_partition for e in p),
        states=states,
        notifications=Counter(n.notification_id for n in notes),
        malformed=frozenset(malformed),
        totals=period_totals((e for p in by_partition for e in p), timezone),
        touched={(e.account_id, e.bot_id) for p in by_partition for e in p},
    )


def check(
    settings: Settings, want: Truth, mailed: Sequence[str], sink: Settings, notes: list[str]
) -> list[Row]:
    """Every check of the table, in order. ``sink``: the sink's settings (its data dir holds
    the embedded store; the sink must be running: it serves the SQL). What differs is
    described in ``notes``."""
    rows: list[Row] = []
    n, credits, ids = (int(x) for x in run_sql(
        sink, "SELECT count(), sum(credits_micro), uniqExact(event_id) FROM usage_events"
    ).rows[0])  # fmt: skip
    rows.append(Row("ClickHouse rows = events published", f"{want.events:,}", f"{n:,}",
                    n == want.events))  # fmt: skip
    rows.append(Row("ClickHouse: no duplicate event_id", "0 duplicates",
                    f"{n - ids:,} duplicates ({ids:,} distinct)",
                    n == ids and ids == want.events))  # fmt: skip
    rows.append(Row("ClickHouse credits = credits published", f"{want.credits:,}",
                    f"{credits:,}", credits == want.credits))  # fmt: skip

    group = f"{settings.topic_prefix}.processors"
    checked, wrong = totals_diffs(settings, group, want.totals, want.touched)
    notes.extend(wrong[:10])
    rows.append(Row(
        "worker tables: every account's and bot's day and month totals = the events",
        f"{checked:,} totals", f"{len(wrong):,} differ or missing", checked > 0 and not wrong,
    ))  # fmt: skip

    differ, extra, backwards = state_diffs(settings, want, notes)
    rows.append(Row(
        "control topic: every bot's final state = core replay (event time), version aside",
        f"{len(want.states):,} states",
        f"{len(differ):,} differ or missing, {extra:,} extra",
        not differ and not extra,
    ))  # fmt: skip
    rows.append(Row(
        VERSIONS_CHECK, "0 keys", f"{backwards:,} keys", backwards == 0,
    ))  # fmt: skip

    got = Counter(mailed)
    expected = set(want.notifications)
    notes.extend(f"alert {i}: mailed {got[i]} times" for i in sorted(expected) if got[i] != 1)
    notes.extend(f"alert {i}: mailed but not computed by the core" for i in got
                 if i not in expected)  # fmt: skip
    twice = sum(1 for c in got.values() if c > 1)
    missing = len(expected - set(got))
    extra = len(set(got) - expected)
    rows.append(Row(
        "notifier: each alert mailed exactly once",
        f"{len(expected):,} alerts",
        f"{len(got):,} mailed, {missing:,} missing, {twice:,} more than once, {extra:,} unknown",
        bool(expected) and missing == 0 and twice == 0 and extra == 0,
    ))  # fmt: skip

    usage = Topics(settings.topic_prefix).usage
    letters = [DeadLetterRecord.from_bytes(v) for part in read_all(settings, Topics.dlq(usage))
               for _, _, v in part if v]  # fmt: skip
    sources = {(d.partition, d.offset) for d in letters}
    notes.extend(
        f"dead letter of a record not sent malformed: {d.partition}/{d.offset} {d.reason}"
        for d in letters
        if (d.partition, d.offset) not in want.malformed
    )
    rows.append(Row(
        "DLQ: dead-lettered records = malformed records sent",
        f"{len(want.malformed):,} records",
        f"{len(sources):,} records ({len(letters):,} dead letters, "
        f"{len(sources - want.malformed):,} not malformed)",
        sources == want.malformed,
    ))  # fmt: skip
    return rows


VERSIONS_CHECK = "control topic: no key's version goes back (across owners)"
"""A decision goes out before the state holding its version is in the changelog: a new
owner once republished decisions under lower versions, which gateways keeping the newest
version ignore. Each load now raises the partition's version floor (``PartitionState``)."""


def state_diffs(
    settings: Settings, want: Truth, notes: list[str]
) -> tuple[list[tuple[str, str]], int, int]:
    """(bots whose last control state differs from the core's, version and time aside, or is
    missing; extra bots; keys whose version went back on the topic); the fields that differ
    are counted in ``notes`` with the first examples."""
    got: dict[tuple[str, str], bytes] = {}
    history: dict[tuple[str, str], list[tuple[int, int, bytes]]] = defaultdict(list)
    for p, part in enumerate(read_all(settings, Topics(settings.topic_prefix).control)):
        for offset, key, value in part:
            if key is None:
                continue
            account, _, bot = key.decode().partition("/")
            if value is None:  # the bot follows its account's "*" state
                got.pop((account, bot), None)
            else:
                got[(account, bot)] = value
                history[(account, bot)].append((p, offset, value))
    differ: list[tuple[str, str]] = []
    fields: Counter[str] = Counter()
    restamped = 0
    for k, state in sorted(want.states.items()):
        if k not in got:
            differ.append(k)
            fields["(missing)"] += 1
            continue
        if got[k] == encode_state(state):
            continue
        a, b = state_to_avro(state), state_to_avro(decode_state(got[k]))
        changed = [f for f in a if a[f] != b[f]]
        if set(changed) <= {"updated_at_ms", "version"}:
            # The same decision published again by a new owner when it loaded the partition,
            # stamped with its clock then (its version: see VERSIONS_CHECK).
            restamped += 1
            continue
        differ.append(k)
        fields.update(changed)
        if len(differ) <= 10:
            notes.append(f"state {k[0]}/{k[1]}: " + "; ".join(
                f"{f} core={a[f]!r} topic={b[f]!r}" for f in changed))  # fmt: skip
            notes.append(f"  its control records (partition@offset: version, updated_at_ms, "
                         f"blocked_until_ms): {_history(history[k])}")  # fmt: skip
    if differ:
        notes.insert(0, f"control states differing: {len(differ)}; by field: {dict(fields)}")
    if restamped:
        notes.append(f"{restamped} states equal but for updated_at_ms or version "
                     "(republished on load)")  # fmt: skip
    backwards = 0
    for k, records in history.items():
        versions = [decode_state(v).version for _, _, v in records]
        if any(b < a for a, b in itertools.pairwise(versions)):
            backwards += 1
            if backwards <= 3:
                notes.append(f"version went back for {k[0]}/{k[1]}: {_history(records)}")
    return differ, sum(1 for k in got if k not in want.states), backwards


def _history(records: list[tuple[int, int, bytes]]) -> str:
    out = []
    for p, offset, value in records[-12:]:
        st = decode_state(value)
        out.append(f"{p}@{offset}: v{st.version} {st.updated_at_ms} {st.blocked_until_ms}")
    return ", ".join(out)


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    out = ["| check | expected | got | result |", "|---|---|---|---|"]
    out += [f"| {r.check} | {r.expected} | {r.got} | {'PASS' if r.ok else 'FAIL'} |" for r in rows]
    return "\n".join(out)
