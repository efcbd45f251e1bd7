"""Simulating a per-attribute policy (issue 24.3): the events' attributes are read only when
a policy counts by them, and the draft alerts the one end user over its threshold."""

from __future__ import annotations

from capstream.core import UsageEvent
from capstream.simulation import (
    EventSource,
    check_draft,
    configs,
    parse_body,
    reads_attributes,
    simulate,
)
from capstream.simulation.memory import MemoryEvents
from capstream.simulation.source import WITH_ATTRIBUTES
from capstream.streams.records import TenantSettingsRecord

ACCT = "acme"
T0 = 1_793_523_600_000
MIN = 60_000
TENANT = TenantSettingsRecord(account_id=ACCT, plan="pro", owner_email="o@acme.test")
PER_USER = {
    "policy_id": "heavy", "metric": "tokens", "threshold": 1_000, "window_seconds": 3600,
    "scope": "account_each_bot", "per": "end_user", "alert": {"recipients": []},
    "block": {"duration_seconds": 600},
}  # fmt: skip


def _events() -> list[UsageEvent]:
    out = []
    for i in range(12):  # alice 6 x 300 (over at her 4th), bob 6 x 100
        user, tokens = ("alice", 300) if i % 2 == 0 else ("bob", 100)
        at = T0 + i * MIN
        attrs = {"end_user": user}
        out.append(UsageEvent(f"e{i:02d}", ACCT, "bot-1", f"c-{user}", "text", "gpt-4o",
                              tokens, 0, 1, False, 0, at, attrs))  # fmt: skip
    return out


def _run(body: dict[str, object]) -> tuple[dict[str, object], MemoryEvents]:
    query = MemoryEvents(_events())
    draft = check_draft(ACCT, parse_body({"policy": body}), [], TENANT, T0 + 86_400_000)
    current, drafted = configs([], TENANT, draft)
    reads = reads_attributes(current.policies, drafted.policies)
    source = EventSource(query, ACCT, T0 - MIN, T0 + 60 * MIN, attributes=reads)
    return simulate(source, current, drafted, draft), query


def test_a_per_end_user_draft_alerts_only_the_user_over_the_threshold() -> None:
    result, query = _run(PER_USER)
    assert all(WITH_ATTRIBUTES in sql for sql, _ in query.calls[1:])  # the event pages
    alerts = result["simulated"]["alerts"]  # type: ignore[index]
    assert [(a["policy_id"], a["attribute_value"]) for a in alerts] == [("heavy", "alice")]
    assert not result["simulated"]["blocks"]  # type: ignore[index]  # the bot is not paused


def test_a_per_model_draft_reads_no_attributes() -> None:
    result, query = _run({**PER_USER, "per": "model", "threshold": 2_000})
    assert not any(WITH_ATTRIBUTES in sql for sql, _ in query.calls)
    alerts = result["simulated"]["alerts"]  # type: ignore[index]
    assert [a["attribute_value"] for a in alerts] == ["gpt-4o"]  # 2,400 tokens of gpt-4o


def test_the_chart_of_a_per_user_draft_follows_the_highest_user() -> None:
    result, _ = _run(PER_USER)
    (chart,) = result["simulated"]["charts"]  # type: ignore[index]
    assert chart["kind"] == "per_value" and "highest end_user" in chart["label"]
    assert max(v for _, v in chart["points"]) == 1_800  # alice's six events; bob has 600
