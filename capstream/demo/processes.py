"""The demo's child processes: each ``capstream <command>`` in its own process group, logged
to a file, terminated and waited for on the way out — none is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from capstream.errors import CapstreamError

# Runs before ``capstream <command>``: ask Linux to SIGTERM the child when the demo dies
# (even by kill -9), then exec the command (the setting survives exec). If the demo is
# already gone by then, exit at once.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "parent = int(sys.argv[1])\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(0)\n"
    "os.execv(sys.executable, [sys.executable, '-m', *sys.argv[2:]])\n"
)


class ServiceError(CapstreamError):
    """A demo service could not start or stopped on its own."""


@dataclass(slots=True)
class Service:
    """One child process."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts ``capstream`` subcommands and stops them all (SIGTERM, then SIGKILL).

    Start children from the main thread: Linux delivers the parent-death signal when the
    thread that started a child exits.
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.services: dict[str, Service] = {}
        self._logs: list[IO[bytes]] = []

    def start(self, name: str, *args: str, module: str = "capstream.cli") -> Service:
        """Run ``python -m <module> <args>`` (``capstream <args>``) as service ``name``,
        stdout and stderr to its log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        out = log.open("ab")
        self._logs.append(out)
        argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), module, *args]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # its own process group: Ctrl-C reaches only the demo
        )
        service = Service(name, proc, log, time.monotonic())
        self.services[name] = service
        return service

    def exited(self) -> list[Service]:
        """Services whose process has ended."""
        return [s for s in self.services.values() if not s.running]

    def stop(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every group, wait up to ``timeout`` s, SIGKILL what remains; exit codes."""
        running = [s for s in self.services.values() if s.running]
        for s in running:
            _signal_group(s.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for s in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.proc.wait(max(0.1, deadline - time.monotonic()))
        for s in self.services.values():
            if s.running:
                _signal_group(s.pid, signal.SIGKILL)
                s.proc.wait(10)
            else:
                _signal_group(s.pid, signal.SIGKILL)  # stragglers the child left in its group
        for f in self._logs:
            f.close()
        self._logs.clear()
        return {name: s.proc.returncode for name, s in self.services.items()}


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_until(
    what: str, ready: Callable[[], bool], timeout: float, service: Service | None = None
) -> float:
    """Poll ``ready()`` until true; seconds waited. ``ServiceError`` on timeout or if
    ``service`` exits meanwhile (with the tail of its log)."""
    start = time.monotonic()
    while not ready():
        if service is not None and not service.running:
            raise ServiceError(
                f"{service.name} exited with code {service.proc.returncode} while {what}; "
                f"last lines of {service.log}:\n{service.log_tail()}"
            )
        if time.monotonic() - start > timeout:
            tail = f"; last lines of {service.log}:\n{service.log_tail()}" if service else ""
            raise ServiceError(f"timed out after {timeout:.0f}s {what}{tail}")
        time.sleep(0.2)
    return time.monotonic() - start
