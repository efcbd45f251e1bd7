"""The pipeline's processes as the chaos run drives them: workers, the sink, the notifier,
each a ``capstream`` subprocess with its own log; and an SMTP catcher (aiosmtpd)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from email import message_from_bytes
from pathlib import Path
from typing import Any

from capstream.errors import CapstreamError
from capstream.sinks.endpoint import endpoint_file
from capstream.sinks.store import chdb_path
from capstream.streams.settings import Settings


class ChaosError(CapstreamError):
    """The chaos run could not do what it had to (a process did not start, a wait ran out)."""


def wait_until(check: Any, timeout: float, what: str, every: float = 0.2) -> None:
    """Poll ``check()`` until truthy; ChaosError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Service:
    """One ``capstream <command>`` subprocess with its own data dir and log file."""

    def __init__(self, name: str, command: str, settings: Settings, data_dir: Path,
                 logs: Path, env: dict[str, str]) -> None:  # fmt: skip
        self.name = name
        self.command = command
        self.data_dir = data_dir
        self.settings = settings.model_copy(update={"data_dir": data_dir})
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{name}.log"
        self.env = {
            **os.environ,
            "CAPSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "CAPSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "CAPSTREAM_DATA_DIR": str(data_dir),
            "CAPSTREAM_USAGE_PARTITIONS": str(settings.usage_partitions),
            "CAPSTREAM_CONTROL_PARTITIONS": str(settings.control_partitions),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.held = False
        """Down on purpose (killed or stopped by the run): not to be restarted by supervision."""

    def start(self) -> None:
        if self.alive():
            raise ChaosError(f"{self.name} is already running (pid {self.pid})")
        port_file = self.data_dir / "metrics.port"
        port_file.unlink(missing_ok=True)
        self.held = False
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "capstream.cli", self.command],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL (a crash: nothing flushed, nothing committed) and reap it."""
        self.held = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (a clean leave); SIGKILL if it takes longer than ``timeout``."""
        self.held = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the process serves what it serves (a worker: its metrics port; the sink: its
        SQL endpoint, written by this pid); ChaosError if it exits first."""

        def ready() -> bool:
            if not self.alive():
                raise ChaosError(f"{self.name} exited with {self.exit_code()}:\n{self.tail()}")
            if self.command == "worker":
                f = self.data_dir / "metrics.port"
                return f.exists() and bool(f.read_text().strip())
            if self.command == "sink":
                f = endpoint_file(chdb_path(self.settings.clickhouse_dsn))
                try:
                    return bool(json.loads(f.read_text()).get("pid") == self.pid)
                except (OSError, ValueError):
                    return False
            return True

        wait_until(ready, timeout, f"{self.name} to be ready", every=0.1)

    def metrics(self) -> dict[str, float]:
        """A worker's Prometheus samples (empty if it does not answer)."""
        try:
            port = int((self.data_dir / "metrics.port").read_text())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except (OSError, ValueError):
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """Every email the catcher received: its notification id header and recipients."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.rcpts: list[tuple[str, ...]] = []
        self.lock = threading.Lock()
        self.last = time.monotonic()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = message_from_bytes(envelope.content)
        with self.lock:
            self.ids.append(str(msg.get("X-Capstream-Notification-Id", "")))
            self.rcpts.append(tuple(envelope.rcpt_tos))
            self.last = time.monotonic()
        return "250 OK"

    def quiet_s(self) -> float:
        """Seconds since the last email (or since the inbox was made)."""
        return time.monotonic() - self.last

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


class SmtpCatcher:
    """An aiosmtpd server on a free port that keeps what it receives (:class:`Inbox`)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Any = None

    def __enter__(self) -> SmtpCatcher:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
