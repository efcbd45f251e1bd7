"""`capstream kafka up | status | down` as a user runs them, on ports of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from capstream.streams.local_kafka import LocalKafka, free_port


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capstream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _exited(pid: int) -> bool:
    """Every thread of ``pid`` has ended: gone, or a zombie with no thread left (not its
    main thread only, which the JVM ends first while its other threads still shut down)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status and "\nThreads:\t1\n" in status


def test_up_status_down_leaves_no_java_behind(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CAPSTREAM_DATA_DIR": str(tmp_path),
        "CAPSTREAM_KAFKA_PORT": str(port),
        "CAPSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    env.pop("CAPSTREAM_KAFKA_BOOTSTRAP", None)
    up = _run(["kafka", "up"], env)
    assert up.returncode == 0, up.stderr
    try:
        status = _run(["kafka", "status"], env)
        assert status.returncode == 0
        assert "Kafka 4." in status.stdout and "running" in status.stdout
        assert f"PLAINTEXT://127.0.0.1:{port}" in status.stdout
        pid = int((tmp_path / "kafka" / "broker.pid").read_text())
        again = _run(["kafka", "up"], env)  # idempotent: it is already up
        assert again.returncode == 0
        assert int((tmp_path / "kafka" / "broker.pid").read_text()) == pid
    finally:
        down = _run(["kafka", "down"], env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert _exited(pid)  # its parent is init, which collects it
    after = _run(["kafka", "status"], env)
    assert after.returncode == 3 and "stopped" in after.stdout


def test_down_collects_the_broker_this_process_started(tmp_path: Path) -> None:
    """As the integration fixture and the demo do: no `[java] <defunct>` stays behind."""
    broker = LocalKafka(tmp_path, free_port(), free_port())
    broker.up(timeout=120)
    pid = broker.pid()
    assert pid is not None
    assert broker.down() is True
    assert not Path(f"/proc/{pid}").exists()


def test_unknown_flag_and_bad_settings_give_one_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "CAPSTREAM_DATA_DIR": str(tmp_path)}
    bad_flag = _run(["kafka", "up", "--bogus"], env)
    assert bad_flag.returncode == 2 and "No such option" in bad_flag.stderr
    assert "Traceback" not in bad_flag.stderr
    bad_env = _run(["kafka", "status"], {**env, "CAPSTREAM_KAFKA_PORT": "abc"})
    assert bad_env.returncode == 1 and "CAPSTREAM_KAFKA_PORT" in bad_env.stderr
    assert "Traceback" not in bad_env.stderr
