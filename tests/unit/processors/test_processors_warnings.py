"""Warning levels through the worker's partition state: wire records in, state flushed to its
tables and reloaded (a worker restart), each level sent once per window or period."""

from __future__ import annotations

import io
import json

import fastavro

from capstream.core import Effects, Notification, UsageEvent
from capstream.processors.catalog import Catalog
from capstream.processors.partition import CLOCK_KEY, PartitionState
from capstream.streams.codecs import SCHEMA_DIR, Codec, _named_schemas
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.usage_results import Decoded

T0 = 1_795_000_000_000  # 2026-11-18 11:06:40 UTC
MIN = 60_000
CR = 1_000_000


class Sink:
    def __init__(self) -> None:
        self.effects: list[Effects] = []

    def __call__(self, effects: Effects, origin: int | None) -> None:
        self.effects.append(effects)

    def notes(self, kind: str) -> list[Notification]:
        return [n for e in self.effects for n in e.notifications if n.kind == kind]


def refuse(*args: object) -> None:
    raise AssertionError(f"refused {args}")


def catalog() -> Catalog:
    c = Catalog()
    c.apply_policy(None, PolicyRecord(
        account_id="acme", policy_id="p", metric="messages", threshold=10, window_seconds=3600,
        scope="bot", bot_id="bot-1", alert={"recipients": ["ops@acme.example"]},
    ).to_bytes())  # fmt: skip
    c.apply_settings(None, TenantSettingsRecord(
        account_id="acme", owner_email="owner@acme.example", throttle="off",
        caps={"text": {"daily_micro": 100 * CR, "monthly_warn_percents": []}},
    ).to_bytes())  # fmt: skip
    return c


def ev(i: int, t: int) -> Decoded:
    e = UsageEvent(f"e{i}", "acme", "bot-1", "c", "text", "m", 10, 0, 1, False, 10 * CR, t)
    return Decoded([e], None, [])


def restart(part: PartitionState, cat: Catalog, sink: Sink) -> PartitionState:
    """Flush the partition's tables, start a new one from them (the worker's restart)."""
    accounts: list[tuple[bytes, bytes]] = [(CLOCK_KEY, str(part.clock_ms).encode())]
    bots: list[bytes] = []
    for account in part.take_dirty():
        acct, bot_values = part.serialize(account)
        assert acct is not None
        accounts.append((account.encode(), acct))
        bots += [v for _, v in bot_values]
    again = PartitionState(part.partition, cat, sink, event_time=True)
    again.load(accounts, bots, wall_ms=0)
    return again


def test_each_level_once_across_worker_restarts() -> None:
    sink = Sink()
    cat = catalog()
    part = PartitionState(0, cat, sink, event_time=True)
    for i in range(12):  # restart after every event: nothing may be sent twice
        part.apply(i, ev(i, T0 + i * MIN), 0, refuse)
        part = restart(part, cat, sink)
    policy_levels = [n.subject.split(" at ")[1].split("%")[0] for n in sink.notes("policy_warning")]
    assert policy_levels == ["50", "80", "90"]
    assert {n.recipients for n in sink.notes("policy_warning")} == {("ops@acme.example",)}
    assert len(sink.notes("policy_alert")) == 1
    cap_levels = [n.subject for n in sink.notes("cap_warning")]
    assert cap_levels == [
        "Daily text AI credits at 50% of the cap",
        "Daily text AI credits at 80% of the cap",
        "Daily text AI credits at 90% of the cap",
    ]  # the monthly cap is unset; its levels were switched off anyway
    assert len(sink.notes("cap_reached")) == 1
    # the replay of a record already applied sends nothing again
    part.apply(5, ev(5, T0 + 5 * MIN), 0, refuse)
    assert len(sink.notes("policy_warning")) == 3 and len(sink.notes("cap_warning")) == 3


def test_records_written_before_warning_levels_read_with_the_default_levels() -> None:
    for name, value in (
        ("Policy", {"policy_id": "p", "account_id": "acme", "name": "", "metric": "messages",
                    "threshold": 10, "window_seconds": 3600, "scope": "account_total",
                    "bot_id": None, "category": None, "alert": {"recipients": []},
                    "block": None, "enabled": True, "version": 1, "updated_at_ms": 0}),
        ("TenantSettings", {"account_id": "acme", "caps": {"text": {"daily_micro": 5,
                                                                    "monthly_micro": None}}}),
    ):  # fmt: skip
        old_schema = json.loads((SCHEMA_DIR / "history" / f"{name}.1.avsc").read_text())
        fp = Codec(name).register_writer(old_schema)
        buf = io.BytesIO()
        buf.write(b"\xc3\x01" + fp)
        _, named = _named_schemas()
        parsed = fastavro.parse_schema(old_schema, named_schemas=dict(named))
        fastavro.schemaless_writer(buf, parsed, value)
        if name == "Policy":
            rec = PolicyRecord.from_bytes(buf.getvalue())
            assert rec.warn_percents is None
        else:
            settings = TenantSettingsRecord.from_bytes(buf.getvalue())
            assert settings.caps["text"].daily_warn_percents is None
    levels = PolicyRecord(
        account_id="a", policy_id="p", metric="tokens", threshold=5, window_seconds=60,
        scope="account_total", alert={}, warn_percents=[],
    )  # fmt: skip
    assert PolicyRecord.from_bytes(levels.to_bytes()).warn_percents == []
