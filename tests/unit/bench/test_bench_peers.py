"""A peer's config: its figures and log go to the results folder, its state store does not."""

from __future__ import annotations

from pathlib import Path

from capstream.bench.ceilings import Backlog
from capstream.bench.peers import peer_config
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
