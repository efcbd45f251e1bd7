"""Faust's assignor may give a worker one changelog partition both as an active and as a
standby; the worker must then treat it as its own only (``faust_app._no_standby_of_an_active``),
or Faust's recovery reads the worker's own changelog writes back into its store as a standby."""

from __future__ import annotations

from faust.assignor.client_assignment import ClientAssignment
from faust.assignor.partition_assignor import PartitionAssignor
from faust.types import TP

from capstream.processors import faust_app


def test_a_partition_assigned_as_active_and_standby_is_active_only() -> None:
    faust_app._no_standby_of_an_active()
    assignor = PartitionAssignor.__new__(PartitionAssignor)
    log = "g-accounts-changelog"
    assignor._assignment = ClientAssignment(
        actives={"g.usage": [0, 5], log: [0, 5]}, standbys={log: [1, 5]}
    )
    assert assignor.assigned_actives() == {TP("g.usage", 0), TP("g.usage", 5), TP(log, 0),
                                           TP(log, 5)}  # fmt: skip
    assert assignor.assigned_standbys() == {TP(log, 1)}
