"""A peer's config: its figures and log go to the results folder, its state store does not."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

from capstream.bench.ceilings import Backlog
from capstream.bench.load import START_MS
from capstream.bench.peers import KILL_AFTER_S, PEERS, peer_config
from capstream.streams.settings import Settings


def test_a_peers_state_store_is_kept_out_of_the_results_folder(tmp_path: Path) -> None:
    logs, scratch = tmp_path / "results" / "logs", tmp_path / "scratch"
    backlog = Backlog([[b"a", b"b", b"c"], [b"d"]], [[5, 7, 1], [4]], 17, 4)
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", topic_prefix="bench-a")
    cfg = peer_config("quix", settings, backlog, logs, scratch, threshold=500,
                      window_ms=3_600_000, step_ms=1_800_000, max_s=60.0)  # fmt: skip
    assert Path(cfg["state_dir"]).parent == scratch
    assert Path(cfg["result"]).parent == logs
    assert cfg["ends"] == [3, 1] and cfg["partitions"] == 2
    assert cfg["topic"] == "bench-a.usage" and cfg["out_topic"] == "bench-a.peer-quix"
    assert cfg["group"] != peer_config("quix", settings, backlog, logs, scratch, threshold=500,
                                       window_ms=1, step_ms=1, max_s=1.0)["group"]  # fmt: skip


def _faust_peer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("faust_peer", PEERS / "faust_peer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_naive_faust_peer_keeps_the_backlogs_windows_until_it_is_stopped(
    tmp_path: Path,
) -> None:
    # Faust expires windows against the wall clock: every window of the backlog (event time
    # from 2026-01-01) is stale to it, so one table cleanup during the run emptied the table
    # and the crossings after it were missed (a full run: 87 of 88).
    backlog = Backlog([[b"a"]], [[1]], 1, 1)
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", topic_prefix="bench-a")
    cfg = peer_config("faust", settings, backlog, tmp_path, tmp_path, threshold=500,
                      window_ms=3_600_000, step_ms=1_800_000, max_s=60.0)  # fmt: skip
    peer = _faust_peer().build(cfg)
    window = peer.tokens.table.window
    backlog_window_end = window.ranges(START_MS / 1000)[-1][1]
    assert window.stale(backlog_window_end, time.time())  # what a cleanup would delete
    assert peer.app.conf.table_cleanup_interval >= 60.0 + KILL_AFTER_S  # but none runs
