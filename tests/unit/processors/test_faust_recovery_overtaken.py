"""A worker loads a partition's state only from a recovery that restored it.

Found by a full chaos run under load: a rebalance overtook a recovery that was about to end,
Faust ran the tables' recovery callbacks anyway, with the new assignment in place, and the
worker loaded the two partitions it had just been given before anything of theirs was read
("partition 1: 0 accounts loaded"). It then processed their records from the committed
offsets on against empty state: 11,122 of 42,788 day/month totals short, 5,807 final control
states wrong, and versions going back. These tests drive Faust's own ``Recovery`` bookkeeping
(``on_rebalance``, its highwaters and offsets) through that sequence.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from capstream.processors import faust_app
from capstream.processors.options import WorkerOptions
from capstream.processors.tables import TableStore
from capstream.streams.settings import Settings


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = faust_app.make_app(Settings(data_dir=tmp_path), WorkerOptions())
    for name in ("accounts", "bots"):
        app.Table(name, key_type=bytes, value_type=bytes, partitions=8)
    return app


def _rebalance(app: Any, partitions: set[int], generation: int) -> None:
    """What Faust does on an assignment: the recovery's partitions become the new ones (the
    recovery loop then clears the start signal when it begins reading them)."""
    tps = {TP(t.changelog_topic_name, p) for t in app.tables.values() for p in partitions}
    app.assignor.assigned_actives = lambda: tps
    app.assignor.assigned_standbys = lambda: set()
    app.consumer_generation_id = generation
    asyncio.run(app.tables.recovery.on_rebalance(tps, set(), tps, generation))


def _begin(app: Any, highwaters: dict[int, int]) -> None:
    """A recovery begins: it takes each active partition's highwater (last offset)."""
    recovery = app.tables.recovery
    recovery.signal_recovery_start.clear()
    recovery.active_highwaters.clear()
    for t in app.tables.values():
        for p, hw in highwaters.items():
            recovery.active_highwaters[TP(t.changelog_topic_name, p)] = hw


def _read(app: Any, offsets: dict[int, int]) -> None:
    recovery = app.tables.recovery
    for t in app.tables.values():
        for p, offset in offsets.items():
            recovery.active_offsets[TP(t.changelog_topic_name, p)] = offset


def test_a_recovery_overtaken_by_a_rebalance_does_not_restore_the_partitions_it_added(
    app: Any,
) -> None:
    _rebalance(app, {0, 3}, 11)
    _begin(app, {0: 8139, 3: 8636})
    _read(app, {0: 7085, 3: 8636})
    assert faust_app.unrestored(app, [0, 3]) == [
        "capstream.processors-accounts-changelog[0]: read to 7085 of 8139",
        "capstream.processors-bots-changelog[0]: read to 7085 of 8139",
    ]
    _rebalance(app, {0, 1, 3, 7}, 12)  # partitions 1 and 7 added
    _read(app, {0: 8139})  # the old recovery reads on to its highwaters, and ends
    app.tables.recovery.signal_recovery_start.clear()  # the loop took the new one up
    why = faust_app.unrestored(app, [0, 1, 3, 7])
    assert why == [
        f"capstream.processors-{t}-changelog[{p}]: no highwater taken by this recovery"
        for t in ("accounts", "bots") for p in (1, 7)
    ]  # fmt: skip
    # The recovery of the new assignment reads partitions 1 and 7 too: now they count.
    _begin(app, {0: 8139, 1: 42011, 3: 8636, 7: -1})
    _read(app, {1: 30000})
    assert [w.split(": ")[1] for w in faust_app.unrestored(app, [0, 1, 3, 7])] == [
        "read to 30000 of 42011"
    ] * 2
    _read(app, {1: 42011})
    assert faust_app.unrestored(app, [0, 1, 3, 7]) == []  # 7's changelog is empty


def test_a_pending_recovery_restores_nothing(app: Any) -> None:
    _rebalance(app, {0}, 1)
    _begin(app, {0: -1})
    assert faust_app.unrestored(app, [0]) == []
    _rebalance(app, {0, 1}, 2)  # its start signal is set until the loop begins it
    assert faust_app.unrestored(app, [0, 1]) == ["a newer recovery is pending"]


def test_a_partition_not_being_restored_is_not_restored(app: Any) -> None:
    _rebalance(app, {0}, 1)
    _begin(app, {0: 5})
    _read(app, {0: 5})
    assert faust_app.unrestored(app, [0]) == []
    assert faust_app.unrestored(app, [2]) == [
        f"capstream.processors-{t}-changelog[2]: not among the partitions being restored"
        for t in ("accounts", "bots")
    ]


def test_a_wiped_partition_given_back_is_read_from_the_changelogs_start(app: Any) -> None:
    """A lapse wipes the partitions' stores; the group then gives the same worker the same
    partitions (no revoke). Faust started that recovery at the offset it had read to before,
    so keys not written since were gone (a full chaos run, after the broker bounce)."""
    stores = [TableStore(t) for t in app.tables.values()]
    _rebalance(app, {0, 1}, 3)
    _begin(app, {0: 2713, 1: 2500})
    _read(app, {0: 2713, 1: 2500})  # recovered, then owned
    recovery = app.tables.recovery
    for store in stores:
        store._db(0)[b"acct-1"] = b"state"
        store.forget(0)  # the lapse: partition 0's store emptied
    _rebalance(app, {0, 1}, 4)  # the same partitions again: Faust revokes nothing
    for t in app.tables.values():
        assert recovery.active_offsets[TP(t.changelog_topic_name, 0)] is None  # from the start
        assert recovery.active_offsets[TP(t.changelog_topic_name, 1)] == 2500  # kept, not wiped
    assert faust_app.unrestored(app, [0]) != []  # and nothing loads before it is read
