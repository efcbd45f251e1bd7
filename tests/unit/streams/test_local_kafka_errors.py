"""The local broker's setup fails with one clear message, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from capstream.errors import KafkaSetupError
from capstream.streams import local_kafka
from capstream.streams.local_kafka import LocalKafka, kafka_version


def test_pinned_version_is_kafka_4() -> None:
    assert kafka_version().startswith("4.")


def test_missing_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(local_kafka.shutil, "which", lambda tool: None)
    with pytest.raises(KafkaSetupError, match="`java` was not found"):
        LocalKafka(tmp_path, 1, 2).up()


def test_missing_mvn_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(local_kafka.shutil, "which", lambda tool: None)
    with pytest.raises(KafkaSetupError, match="`mvn` was not found"):
        local_kafka.resolve_classpath()


def test_port_in_use_is_refused_before_starting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(KafkaSetupError, match=f"port {port} .* in use"):
            LocalKafka(tmp_path, port, local_kafka.free_port()).up()


def test_corrupt_data_dir_is_reported_with_the_way_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broker = LocalKafka(tmp_path, local_kafka.free_port(), local_kafka.free_port())
    broker.log_dir.mkdir(parents=True)
    (broker.log_dir / "meta.properties").write_text("garbage\x00\x01")
    monkeypatch.setattr(local_kafka, "resolve_classpath", lambda: "")
    with pytest.raises(KafkaSetupError, match=r"corrupt.*kafka down --wipe"):
        broker.up()


def test_down_when_nothing_runs_says_so(tmp_path: Path) -> None:
    assert LocalKafka(tmp_path).down() is False
    assert LocalKafka(tmp_path).status().running is False


def test_a_cluster_id_starting_with_a_dash_formats(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # One random id in 64 starts with "-"; passed as its own argument it was read as an
    # option and the broker could not be formatted.
    monkeypatch.setattr(local_kafka, "new_cluster_id", lambda: "-Vz3Hk1mQhO5bWw0oP2x7g")
    broker = LocalKafka(tmp_path, local_kafka.free_port(), local_kafka.free_port())
    broker._render_config()
    broker._format(local_kafka._require("java", ""), local_kafka.resolve_classpath())
    meta = (broker.log_dir / "meta.properties").read_text()
    assert "cluster.id=-Vz3Hk1mQhO5bWw0oP2x7g" in meta
