"""``capstream sink`` as a process: kill -9 mid-stream, restart, still exactly N rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sink_helpers import (
    DAILY_TOTALS_SQL,
    caught_up,
    count,
    hourly_sums,
    produce_usage,
    python_daily_totals,
    table_hourly,
    usage_records,
    wait_for,
)

from capstream.sinks.endpoint import endpoint_file
from capstream.sinks.sql import run_sql
from capstream.sinks.store import chdb_path
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

EVENTS = 24_000


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "CAPSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "CAPSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "CAPSTREAM_DATA_DIR": str(settings.data_dir),
        "CAPSTREAM_SINK_BATCH_MIB": "0.03",  # many small batches: a kill lands mid-stream
        "CAPSTREAM_SINK_FLUSH_INTERVAL": "0.05",
        "CAPSTREAM_SINK_SESSION_TIMEOUT": "6",  # the killed member leaves the group sooner
    }


@pytest.fixture
def sink_process(topics: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Starts ``python -m capstream.cli sink`` processes; kills leftovers at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _start(settings: Settings, procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    store = chdb_path(settings.clickhouse_dsn)
    endpoint_file(store).unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "capstream.cli", "sink"],
        env=_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    procs.append(proc)

    def serving() -> bool:
        assert proc.poll() is None, f"the sink exited:\n{log.read_text()[-3000:]}"
        return endpoint_file(store).exists()

    wait_for(serving, 60, "the sink to serve SQL")


def _cli_sql(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "capstream.cli", "sql", *args],
        env=_env(settings),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_kill_9_mid_stream_then_restart_still_writes_every_event_once(
    topics: Settings, sink_process: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "sink.log"
    records = usage_records(EVENTS, per_record=50, seed=11)
    _start(topics, sink_process, log)
    producer = threading.Thread(
        target=produce_usage, args=(topics, records), kwargs={"pace_s": 0.004}
    )
    producer.start()
    # queries go through the running sink (it owns the chDB store)
    wait_for(lambda: count(topics) >= EVENTS // 4, 120, "a quarter of the rows")
    sink_process[0].send_signal(signal.SIGKILL)
    assert sink_process[0].wait(10) == -signal.SIGKILL
    producer.join(120)

    _start(topics, sink_process, log)  # the store is free again; the endpoint file is rewritten
    usage = Topics(topics.topic_prefix).usage
    group = f"{topics.topic_prefix}.sink"
    wait_for(lambda: caught_up(topics, group, usage), 180, "every record written and committed")
    assert run_sql(topics, "SELECT count(), uniqExact(event_id) FROM usage_events").rows == [
        [EVENTS, EVENTS]
    ]
    assert table_hourly(topics) == hourly_sums(records)
    assert [int(x) for x in run_sql(topics, DAILY_TOTALS_SQL).rows[0]] == python_daily_totals(
        records
    )

    # `capstream sql` from another process, through the owner, parameterised, as JSON
    out = _cli_sql(
        topics,
        "SELECT count() AS n FROM usage_events WHERE account_id = {account:String}",
        "--param",
        "account=acct-3",
        "--format",
        "json",
    )
    expected = sum(len(b["events"]) for a, b in records if a == "acct-3")
    assert json.loads(out) == [{"n": expected}]

    sink_process[1].send_signal(signal.SIGTERM)
    assert sink_process[1].wait(60) == 0, log.read_text()[-3000:]
    assert not endpoint_file(chdb_path(topics.clickhouse_dsn)).exists()
    # nobody holds the store now: `capstream sql` opens it directly, read-only
    assert _cli_sql(topics, "SELECT count() FROM usage_events", "--format", "csv").split() == [
        "count()",
        str(EVENTS),
    ]
    refused = subprocess.run(
        [sys.executable, "-m", "capstream.cli", "sql", "TRUNCATE TABLE usage_events"],
        env=_env(topics),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and b"read-only" in refused.stderr
