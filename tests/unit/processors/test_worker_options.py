"""Worker and sink options: one pydantic-settings model each, read from CAPSTREAM_WORKER_* /
CAPSTREAM_SINK_* variables; the CLI passes only the options given on its command line, and a
bad value names the variable it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from capstream.cli import app
from capstream.errors import ConfigError
from capstream.processors import worker as worker_module
from capstream.processors.options import WorkerOptions
from capstream.sinks import commands as sink_commands
from capstream.sinks.options import MIB, SinkOptions


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Runs ``capstream worker`` / ``capstream sink`` up to the options they would run with."""
    seen: dict[str, Any] = {}
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("CAPSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(
        worker_module, "run_worker", lambda settings, options: seen.update(worker=options)
    )
    monkeypatch.setattr(
        sink_commands, "sink_command", lambda settings, out, options: seen.update(sink=options)
    )
    return seen


def test_the_worker_reads_its_variables_and_the_command_line_wins(
    ran: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSTREAM_WORKER_FLUSH_INTERVAL", "0.2")
    monkeypatch.setenv("CAPSTREAM_WORKER_EVENT_TIME", "true")
    monkeypatch.setenv("CAPSTREAM_WORKER_METRICS_PORT", "-1")
    monkeypatch.setenv("CAPSTREAM_WORKER_SESSION_TIMEOUT", "7")
    monkeypatch.setenv("CAPSTREAM_WORKER_FLUSH_SHARE", "0.5")  # no flag: only the variable
    result = CliRunner().invoke(app, ["worker", "--session-timeout", "12", "--loglevel", "INFO"])
    assert result.exit_code == 0, result.output
    options: WorkerOptions = ran["worker"]
    assert options.flush_interval_s == 0.2 and options.event_time
    assert options.metrics_port is None and options.flush_share == 0.5
    assert options.session_timeout_s == 12 and options.loglevel == "info"
    assert options.max_future_skew_s == WorkerOptions().max_future_skew_s  # the default


def test_a_bad_worker_variable_is_refused_naming_it(
    ran: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSTREAM_WORKER_SESSION_TIMEOUT", "2")
    monkeypatch.setenv("CAPSTREAM_WORKER_FLUSH_EVENTS", "many")
    with pytest.raises(ConfigError) as refused:
        WorkerOptions()
    message = str(refused.value)
    assert "CAPSTREAM_WORKER_SESSION_TIMEOUT (session_timeout_s)" in message
    assert "greater than or equal to 6" in message
    assert "CAPSTREAM_WORKER_FLUSH_EVENTS (flush_events)" in message
    result = CliRunner().invoke(app, ["worker"])
    assert isinstance(result.exception, ConfigError) and "worker" not in ran


def test_recovery_options_come_from_their_variables_within_bounds(
    ran: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = WorkerOptions()
    assert defaults.standby_replicas == 0  # not safe yet with the flusher's own writes
    assert defaults.heartbeat_interval_s * 3 <= defaults.session_timeout_s
    monkeypatch.setenv("CAPSTREAM_WORKER_STANDBY", "2")
    monkeypatch.setenv("CAPSTREAM_WORKER_HEARTBEAT", "3")
    monkeypatch.setenv("CAPSTREAM_WORKER_SESSION_TIMEOUT", "9")
    options = WorkerOptions()
    assert (options.standby_replicas, options.heartbeat_interval_s) == (2, 3.0)
    result = CliRunner().invoke(
        app, ["worker", "--standby-replicas", "0", "--heartbeat-interval", "0.5"]
    )
    assert result.exit_code == 0, result.output
    given: WorkerOptions = ran["worker"]
    assert (given.standby_replicas, given.heartbeat_interval_s) == (0, 0.5)
    assert given.session_timeout_s == 9  # from its variable: no flag given
    for variable, value, bound in (
        ("CAPSTREAM_WORKER_STANDBY", "-1", "greater than or equal to 0"),
        ("CAPSTREAM_WORKER_STANDBY", "9", "less than or equal to 8"),
        ("CAPSTREAM_WORKER_HEARTBEAT", "0.01", "greater than or equal to 0.1"),
        ("CAPSTREAM_WORKER_STANDBY", "one", "valid integer"),
    ):
        with monkeypatch.context() as env:
            env.setenv(variable, value)
            with pytest.raises(ConfigError, match=variable) as refused:
                WorkerOptions()
            assert bound in str(refused.value)


def test_a_heartbeat_slower_than_the_lease_allows_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The membership lease spans three quarters of the session timeout from a heartbeat:
    heartbeats rarer than a third of it would let the lease lapse between two of them."""
    monkeypatch.setenv("CAPSTREAM_WORKER_SESSION_TIMEOUT", "6")
    monkeypatch.setenv("CAPSTREAM_WORKER_HEARTBEAT", "2.5")
    with pytest.raises(ConfigError) as refused:
        WorkerOptions()
    message = str(refused.value)
    assert "CAPSTREAM_WORKER_HEARTBEAT" in message and "CAPSTREAM_WORKER_SESSION_TIMEOUT" in message
    assert WorkerOptions(heartbeat_interval_s=2).heartbeat_interval_s == 2


def test_a_bad_worker_flag_is_refused_naming_the_option(ran: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["worker", "--flush-interval", "0"])
    assert isinstance(result.exception, ConfigError)
    assert "flush_interval_s" in str(result.exception) and "worker" not in ran


def test_the_sink_reads_sizes_in_mib_and_the_command_line_wins(
    ran: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSTREAM_SINK_BATCH_MIB", "0.05")
    monkeypatch.setenv("CAPSTREAM_SINK_FLUSH_INTERVAL", "0.1")
    monkeypatch.setenv("CAPSTREAM_SINK_RETENTION_DAYS", "0")  # 0 = keep
    monkeypatch.setenv("CAPSTREAM_SINK_GROUP", "g1")
    result = CliRunner().invoke(app, ["sink", "--max-buffer-mib", "2", "--group", "g2"])
    assert result.exit_code == 0, result.output
    options: SinkOptions = ran["sink"]
    assert options.batch_bytes == int(0.05 * MIB) and options.flush_interval_s == 0.1
    assert options.max_buffered_bytes == 2 * MIB and options.retention_days is None
    assert options.group_id == "g2" and options.session_timeout_s == 10.0


def test_a_bad_sink_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTREAM_SINK_BATCH_MIB", "lots")
    with pytest.raises(ConfigError, match=r"CAPSTREAM_SINK_BATCH_MIB \(batch_mib\)"):
        SinkOptions()
    monkeypatch.setenv("CAPSTREAM_SINK_BATCH_MIB", "1")
    monkeypatch.setenv("CAPSTREAM_SINK_MAX_BUFFER_MIB", "1")
    with pytest.raises(ConfigError, match=r"max_buffered_bytes .* at least 2 x batch_bytes"):
        SinkOptions()


def test_options_are_frozen() -> None:
    options = WorkerOptions()
    with pytest.raises(Exception, match="frozen"):
        options.flush_interval_s = 1.0  # type: ignore[misc]


def test_the_tables_rocksdb_memory_comes_from_the_worker_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from capstream.processors.app import Processors
    from capstream.streams.settings import Settings

    monkeypatch.setenv("CAPSTREAM_WORKER_ROCKSDB_WRITE_BUFFER_MIB", "3")
    monkeypatch.setenv("CAPSTREAM_WORKER_ROCKSDB_BLOCK_CACHE_MIB", "5")
    processors = Processors(Settings(data_dir=tmp_path), WorkerOptions())
    for store in (processors.accounts, processors.bots, processors.feed):
        store.get(0, b"k")  # opens partition 0's database
        [written] = Path(store.table.data.partition_path(0)).glob("OPTIONS-*")
        options = written.read_text()  # what RocksDB itself opened the database with
        assert "write_buffer_size=3145728\n" in options
        assert "max_write_buffer_number=2\n" in options
        db = store.table.data._db_for_partition(0)
        assert db.property_int_value("rocksdb.block-cache-capacity") == 5 * 1024 * 1024


def test_a_bad_rocksdb_memory_option_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTREAM_WORKER_ROCKSDB_WRITE_BUFFER_MIB", "0")
    monkeypatch.setenv("CAPSTREAM_WORKER_ROCKSDB_WRITE_BUFFERS", "1")
    with pytest.raises(ConfigError) as refused:
        WorkerOptions()
    message = str(refused.value)
    assert "CAPSTREAM_WORKER_ROCKSDB_WRITE_BUFFER_MIB (rocksdb_write_buffer_mib)" in message
    assert "CAPSTREAM_WORKER_ROCKSDB_WRITE_BUFFERS (rocksdb_write_buffers)" in message
