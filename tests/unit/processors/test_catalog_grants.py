"""Grant records in the catalog (issue 24 item 1): the capped category resumes where the
account is held; a grant read again changes nothing; the raise ends with its period."""

from __future__ import annotations

from test_processors_partition import MIN, Sink, refuse

from capstream.core import UsageEvent
from capstream.processors.catalog import Catalog
from capstream.processors.partition import PartitionState
from capstream.streams.records import CapGrantRecord, TenantSettingsRecord
from capstream.streams.usage_decode import Decoded

T0 = 1_795_000_000_000  # 2026-11-18 ~09:46 UTC
DAY_END = 1_795_046_400_000  # 2026-11-19 00:00 UTC


def credits(i: int, t: int, amount: int) -> Decoded:
    e = UsageEvent(f"e{i}", "acme", "bot-1", "c", "text", "m", 1, 0, 1, False, amount, t)
    return Decoded([e], None, [])


def grant(gid: str = "g1", amount: int = 500, key: str = "2026-11-18") -> bytes:
    return CapGrantRecord(
        grant_id=gid, account_id="acme", category="text", period="daily", period_key=key,
        amount_micro=amount, granted_at_ms=T0, granted_by="admin",
    ).to_bytes()  # fmt: skip


def capped(sink: Sink) -> list[bool]:
    return ["text" in s.caps for e in sink.effects for s in e.enforcement if s.bot_id == "*"]


def test_a_grant_resumes_the_capped_category_once_and_ends_with_its_day() -> None:
    clock = [T0]
    catalog = Catalog()
    catalog.grants.clock = lambda: clock[0]
    catalog.apply_settings(b"acme", TenantSettingsRecord(
        account_id="acme", plan="starter", caps={"text": {"daily_micro": 1_000}},
    ).to_bytes())  # fmt: skip
    sink = Sink()
    part = PartitionState(0, catalog, sink)
    part.apply(0, credits(1, T0, 1_000), T0, refuse)
    assert capped(sink)[-1] is True

    clock[0] = T0 + MIN
    assert catalog.apply_grant(b"acme/g1", grant()) == "acme"
    assert catalog.settings("acme").caps["text"].daily_micro == 1_500
    assert part.reevaluate("acme", T0 + MIN)
    assert capped(sink)[-1] is False  # resumed at once
    raised = catalog.settings("acme")
    # the same grant read again (a replay, a restart): nothing to re-decide, not doubled
    assert catalog.apply_grant(b"acme/g1", grant()) is None
    assert catalog.settings("acme") is raised
    part.apply(1, credits(2, T0 + 2 * MIN, 499), T0 + 2 * MIN, refuse)
    assert capped(sink)[-1] is False
    part.apply(2, credits(3, T0 + 3 * MIN, 1), T0 + 3 * MIN, refuse)
    assert capped(sink)[-1] is True  # at 1,500: the raised cap

    # a settings change keeps the grant on top of the new cap
    catalog.apply_settings(b"acme", TenantSettingsRecord(
        account_id="acme", plan="starter", caps={"text": {"daily_micro": 2_000}}, version=2,
    ).to_bytes())  # fmt: skip
    assert catalog.settings("acme").caps["text"].daily_micro == 2_500
    # the day ends: the timer's refresh drops the raise, the account is re-decided
    assert catalog.refresh(DAY_END - 1) == set()
    assert catalog.refresh(DAY_END) == {"acme"}
    assert catalog.settings("acme").caps["text"].daily_micro == 2_000
    # withdrawn (a tombstone) on a later day changes nothing more
    assert catalog.apply_grant(b"acme/g1", None) is None


def test_a_bad_grant_record_is_refused_for_the_dlq() -> None:
    import pytest

    from capstream.errors import DecodeError

    catalog = Catalog()
    with pytest.raises(DecodeError):
        catalog.apply_grant(b"acme/g1", b"not avro")
    with pytest.raises(DecodeError):
        catalog.apply_grant(b"nokey", None)
