"""Every ready query of docs/analytics.md runs on sink-written data and gives the right answer."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from confluent_kafka import Producer
from sink_helpers import caught_up, sink_running, wait_for

from capstream.sinks.sql import run_sql
from capstream.streams.records import (
    CapHitRecord,
    CapStatusRecord,
    EnforcementStateRecord,
    UsageBatchRecord,
    UsageEventRecord,
)
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
KOLKATA = ZoneInfo("Asia/Kolkata")
T0 = int(datetime(2026, 9, 21, 16, 0, tzinfo=UTC).timestamp() * 1000)  # 21:30 in Kolkata
MIN = 60_000


def doc_queries() -> list[str]:
    """The fenced ```sql blocks, in order."""
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


def shown_queries() -> list[str]:
    """Every other query the page shows: ``capstream sql "..."`` examples (in code blocks
    or inline) and inline code spans that are whole statements."""
    text = re.sub(r"```sql\n.*?```", "", DOC.read_text(), flags=re.S)
    found = re.findall(r'capstream sql "([^"]+)"', text)
    text = re.sub(r'capstream sql "[^"]+"', "", text)
    spans = re.findall(r"`((?:SELECT|WITH)\s[^`]*)`", text)
    return [" ".join(q.split()) for q in found + spans]


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _events() -> list[UsageEventRecord]:
    """acme's usage across Kolkata's midnight (18:30 UTC), plus another account's."""
    out = []
    for i in range(60):
        out.append(
            UsageEventRecord(
                event_id=f"e{i}",
                account_id="acme" if i % 6 else "other",
                bot_id=f"bot-{i % 2}",
                conversation_id=f"c{i % 5}",
                category="text",
                model="claude-haiku",
                tokens_in=10 * i,
                tokens_out=i,
                messages=1,
                conversation_started=i < 5,
                credits_micro=1_000 * i,
                occurred_at_ms=T0 + i * 5 * MIN,  # 16:00 .. 20:55 UTC
            )
        )
    return out


def _publish(settings: Settings, events: list[UsageEventRecord]) -> None:
    t = Topics(settings.topic_prefix)
    # keyed by account with Kafka's murmur2 (the SDK's rule): an event on another partition
    # than its account's is not stored there (the worker re-sends it home)
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"}
    )
    for n in range(0, len(events), 7):
        chunk = [e for e in events[n : n + 7] if e.account_id == "acme"]
        rest = [e for e in events[n : n + 7] if e.account_id != "acme"]
        for account, part in (("acme", chunk), ("other", rest)):
            if part:
                batch = UsageBatchRecord(batch_id=f"b{n}{account}", sent_at_ms=T0, events=part)
                producer.produce(t.usage, batch.to_bytes(), key=account.encode())
    # bot-0 hits its daily text cap at 17:00 UTC, three attempts; topped up at 17:45 UTC
    resumes = _ms(datetime(2026, 9, 22, tzinfo=KOLKATA))
    for i in range(3):
        hit = CapHitRecord(
            hit_id=f"h{i}",
            account_id="acme",
            bot_id="bot-0",
            conversation_id=f"c{i}",
            category="text",
            period="daily",
            period_key="2026-09-21",
            occurred_at_ms=T0 + 60 * MIN + i * MIN,
        )
        producer.produce(t.caphits, hit.to_bytes(), key=b"acme")
    capped = {
        "text": CapStatusRecord(period="daily", period_key="2026-09-21", resumes_at_ms=resumes)
    }
    # the cap and its lifting are the account's state ("*"): its bots follow it
    for version, at, caps in ((1, T0 + 59 * MIN, capped), (2, T0 + 105 * MIN, {})):
        state = EnforcementStateRecord(
            account_id="acme",
            bot_id="*",
            version=version,
            updated_at_ms=at,
            model="claude-haiku",
            caps=caps,
        )
        producer.produce(t.control, state.to_bytes(), key=b"acme/*")
    assert producer.flush(30) == 0


def test_the_documented_queries_answer_correctly(
    topics: Settings, group_id: Callable[[], str]
) -> None:
    events = _events()
    _publish(topics, events)
    t = Topics(topics.topic_prefix)
    group = group_id()
    with sink_running(topics, group_id=group):
        for topic in (t.usage, t.caphits, t.control):
            wait_for(lambda topic=topic: caught_up(topics, group, topic), 60, topic)
    params = {
        "account": "acme",
        "tz": "Asia/Kolkata",
        "from": "2026-09-01",
        "to": "2026-09-30",
        "limit": "3",
    }
    queries = doc_queries()
    assert len(queries) == 6

    def run(sql: str, **override: str) -> list[list[object]]:
        names = set(re.findall(r"\{(\w+):", sql))
        return run_sql(
            topics, sql, {k: v for k, v in {**params, **override}.items() if k in names}
        ).rows

    acme = [e for e in events if e.account_id == "acme"]
    per_day: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for e in acme:
        day = datetime.fromtimestamp(e.occurred_at_ms / 1000, KOLKATA).date().isoformat()
        per_day[(day, e.bot_id)][0] += 1
        per_day[(day, e.bot_id)][1] += e.credits_micro
    daily = run(queries[0])
    assert {(r[0], r[1]): [r[2], round(float(r[6]) * 1e6)] for r in daily} == per_day
    assert {r[0] for r in daily} == {"2026-09-21", "2026-09-22"}  # split at local midnight

    # the hourly rollup matches the raw query in a whole-hour timezone
    assert run(queries[1], tz="UTC") == run(queries[0], tz="UTC")

    spend: dict[tuple[str, str], int] = defaultdict(int)
    for e in acme:
        spend[(e.conversation_id, e.bot_id)] += e.credits_micro
    top = run(queries[2])
    assert [(r[0], r[1]) for r in top] == sorted(spend, key=lambda c: (-spend[c], c))[:3]
    assert round(float(top[0][2]) * 1e6) == max(spend.values())

    assert run(queries[3]) == [["2026-09-21", "text", "daily", 3, 3, 1]]

    [topup] = run(queries[4])
    assert topup[:4] == ["bot-0", "text", "daily", "2026-09-21"]
    assert topup[-1] == 45  # first hit 17:00 UTC, cap lifted 17:45 UTC

    [fresh] = run(queries[5])
    assert fresh[0] is not None

    # Every other query the page shows runs too (the first one, SELECT * FROM usage_daily,
    # failed to deserialize a uniq state before migration 4).
    shown = shown_queries()
    assert any(q.startswith("SELECT * FROM usage_daily") for q in shown), shown
    assert len(shown) >= 3
    for q in shown:
        assert run(q) is not None, q
    star = run("SELECT * FROM usage_daily WHERE account_id = {account:String} LIMIT 5")
    assert star and all(r[1] == "acme" for r in star)
    merged = run(
        "SELECT day, bot_id, sum(events) AS events, uniqMerge(active_conversations) AS "
        "conversations FROM usage_daily WHERE account_id = {account:String} GROUP BY day, "
        "bot_id ORDER BY day, bot_id"
    )
    assert sum(int(r[2]) for r in merged) == len(acme)
