"""The end-of-run checker: what the pipeline holds against what was published.

Ground truth is the generator (every event the run meant to publish, in each partition's
order, which one idempotent producer keeps) and the decision core walking those events in
event time (``bench.truth.capstream_truth``). The checker never looks at what the run
*did* publish: a record lost anywhere, before or after the broker, makes it fail (the
negative control drops one on purpose).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from capstream.bench.kafka import read_all
from capstream.bench.truth import capstream_truth
from capstream.core import Notification, PolicySet, TenantSettings, UsageEvent
from capstream.gateway.states import decode_state, encode_state, state_to_avro
from capstream.sinks.sql import run_sql
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


def truth(
    by_partition: Sequence[Sequence[UsageEvent]],
    policies: Mapping[str, PolicySet],
    settings: Mapping[str, TenantSettings],
    malformed: set[tuple[int, int]],
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

    differ, extra = state_diffs(settings, want, notes)
    rows.append(Row(
        "control topic: every bot's final state = core replay (event time)",
        f"{len(want.states):,} states",
        f"{len(differ):,} differ or missing, {extra:,} extra",
        not differ and not extra,
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


def state_diffs(
    settings: Settings, want: Truth, notes: list[str]
) -> tuple[list[tuple[str, str]], int]:
    """(bots whose last control state differs from the core's or is missing, extra bots);
    the fields that differ are counted in ``notes`` with the first examples."""
    got: dict[tuple[str, str], bytes] = {}
    for part in read_all(settings, Topics(settings.topic_prefix).control):
        for _, key, value in part:
            if key is not None and value is not None:
                account, _, bot = key.decode().partition("/")
                got[(account, bot)] = value
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
        if changed == ["updated_at_ms"]:
            # The same decision (same version, same fields) published again by a new owner
            # when it loaded the partition, stamped with its clock then: not a difference.
            restamped += 1
            continue
        differ.append(k)
        fields.update(changed)
        if len(differ) <= 10:
            notes.append(f"state {k[0]}/{k[1]}: " + "; ".join(
                f"{f} core={a[f]!r} topic={b[f]!r}" for f in changed))  # fmt: skip
    if differ:
        notes.insert(0, f"control states differing: {len(differ)}; by field: {dict(fields)}")
    if restamped:
        notes.append(f"{restamped} states equal but for updated_at_ms (republished on load)")
    return differ, sum(1 for k in got if k not in want.states)


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    out = ["| check | expected | got | result |", "|---|---|---|---|"]
    out += [f"| {r.check} | {r.expected} | {r.got} | {'PASS' if r.ok else 'FAIL'} |"
            for r in rows]  # fmt: skip
    return "\n".join(out)
