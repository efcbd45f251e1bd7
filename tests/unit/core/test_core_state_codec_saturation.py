"""The state codec is never handed a value it cannot write: totals past int64 saturate."""

from __future__ import annotations

import struct

from capstream.core import UsageEvent
from capstream.core.state_codec import Reader, Writer, saturated
from capstream.processors.catalog import Catalog
from capstream.processors.partition import PartitionState
from capstream.streams.usage_results import Decoded

T0 = 1_795_000_000_000


def test_values_past_their_field_are_written_saturated_instead_of_raising() -> None:
    w = Writer(b"H")
    w.i64_list([1, 1 << 70, -(1 << 70)])
    w.pack(struct.Struct("<I3q"), 1 << 40, 5, 1 << 64, -(1 << 63))
    r = Reader(w.bytes(), b"H")
    assert list(r.i64_array(3)) == [1, (1 << 63) - 1, -(1 << 63) + 1]
    assert saturated("<I3q", [1 << 40, 5, 1 << 64, -(1 << 63)]) == [
        (1 << 32) - 1, 5, (1 << 63) - 1, -(1 << 63)  # int64 min stays: it means None
    ]  # fmt: skip


def test_a_partition_whose_totals_pass_int64_still_flushes_and_reloads() -> None:
    """Two events whose sum overflows int64 (each alone fits) crashed the flush in a loop."""
    part = PartitionState(0, Catalog(), lambda effects, origin: None)
    big = (1 << 63) - 10
    events = [
        UsageEvent(f"e{i}", "acme", "bot-1", "c", "text", "m", big, big, 1, False, big, T0 + i)
        for i in range(2)
    ]
    part.apply(0, Decoded(events, None, []), T0, lambda *a: None)
    values = {}
    for account_id in part.take_dirty():
        account, bots = part.serialize(account_id)
        assert account is not None
        values[account_id.encode()] = account
        values.update(bots)
    again = PartitionState(0, Catalog(), lambda effects, origin: None)
    again.load(
        [(k, v) for k, v in values.items() if k == b"acme"],
        [v for k, v in values.items() if k != b"acme"],
        T0 + 5,
    )
    bot = again.accounts["acme"].bots["bot-1"]
    assert bot.day[0] == (1 << 63) - 1  # tokens saturate at the largest int64
