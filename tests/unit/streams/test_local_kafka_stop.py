"""`kafka down` returns once the broker has really exited, not when its main thread has.

The JVM's main thread ends first and shows as a zombie while the broker's other threads still
shut down; a stand-in process does the same here (its main thread leaves by the ``exit``
system call on SIGTERM, a second thread finishes the shutdown and writes a file).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from capstream.streams import local_kafka
from capstream.streams.local_kafka import LocalKafka

_SYS_EXIT = {"x86_64": 60, "aarch64": 93}.get(os.uname().machine)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or _SYS_EXIT is None,
    reason="needs Linux /proc and a known exit syscall number",
)

# argv: shutdown seconds, file written when the shutdown is done, then the broker's cmdline
# words (kafka.Kafka <config>) so that LocalKafka.pid() recognises it.
_FAKE_JVM = f"""
import ctypes, signal, sys, threading, time

stopping = threading.Event()

def shutdown():
    stopping.wait()
    time.sleep(float(sys.argv[1]))  # the broker closing its logs and sockets
    open(sys.argv[2], "w").close()

def on_term(*_):
    stopping.set()
    ctypes.CDLL(None).syscall({_SYS_EXIT}, 0)  # only the main thread ends, as the JVM's does

threading.Thread(target=shutdown).start()
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(1)
"""

# Starts the stand-in and exits, so that it is not the test process's child.
_LAUNCHER = """
import subprocess, sys
proc = subprocess.Popen(
    sys.argv[1:],
    stdin=subprocess.DEVNULL,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    start_new_session=True,
)
proc.stdout.readline()
print(proc.pid)
"""


class FakeBroker:
    """A stand-in broker process registered in ``broker``'s pid file."""

    def __init__(self, broker: LocalKafka, shutdown_seconds: float, *, child: bool) -> None:
        broker.root.mkdir(parents=True, exist_ok=True)
        self.done = broker.root / "shutdown.done"
        argv = [sys.executable, "-c", _FAKE_JVM, str(shutdown_seconds), str(self.done)]
        argv += [local_kafka._MAIN_CLASS, str(broker.config)]
        self.proc: subprocess.Popen[bytes] | None = None
        if child:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
            assert self.proc.stdout is not None and self.proc.stdout.readline() == b"ready\n"
            self.pid = self.proc.pid
        else:
            out = subprocess.run(
                [sys.executable, "-c", _LAUNCHER, *argv], capture_output=True, check=True
            )
            self.pid = int(out.stdout)
        broker.pid_file.write_text(str(self.pid))

    def state(self) -> str:
        """The main thread's state letter ("" once /proc has no entry)."""
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            return ""

    def collected(self) -> bool:
        """True when this test process has no uncollected child of that pid."""
        try:
            os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)


@pytest.fixture
def broker(tmp_path: Path) -> LocalKafka:
    return LocalKafka(tmp_path, 1, 2)


@pytest.fixture
def fakes() -> Iterator[list[FakeBroker]]:
    started: list[FakeBroker] = []
    yield started
    for fake in started:
        fake.stop()


def test_down_waits_for_every_thread_and_collects_its_child(
    broker: LocalKafka, fakes: list[FakeBroker]
) -> None:
    fakes.append(fake := FakeBroker(broker, 1.0, child=True))
    assert broker.down() is True
    assert fake.done.exists(), "down() returned while the broker was still shutting down"
    assert fake.collected() and fake.state() == "", "a <defunct> broker was left behind"
    assert not broker.pid_file.exists()


def test_down_waits_for_a_broker_started_by_another_process(
    broker: LocalKafka, fakes: list[FakeBroker]
) -> None:
    fakes.append(fake := FakeBroker(broker, 1.0, child=False))
    assert broker.down() is True
    assert fake.done.exists(), "down() returned while the broker was still shutting down"
    assert not local_kafka._alive(fake.pid)
    assert broker.down() is False


def test_down_kills_a_broker_that_does_not_finish(
    broker: LocalKafka, fakes: list[FakeBroker]
) -> None:
    fakes.append(fake := FakeBroker(broker, 60.0, child=True))
    started = time.monotonic()
    assert broker.down(timeout=0.5) is True
    assert time.monotonic() - started < 10
    assert not fake.done.exists()
    assert fake.collected() and fake.state() == ""


def test_a_broker_whose_main_thread_has_ended_is_still_running(
    broker: LocalKafka, fakes: list[FakeBroker]
) -> None:
    fakes.append(fake := FakeBroker(broker, 1.0, child=True))
    os.kill(fake.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while fake.state() != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.state() == "Z" and not fake.done.exists()
    # A second `kafka down` (or `status`) still finds it, and waits for it.
    assert broker.pid() == fake.pid
    assert broker.down() is True
    assert fake.done.exists() and fake.collected()


@pytest.mark.parametrize("content", ["0", "-1"])
def test_a_pid_file_naming_no_process_is_ignored(broker: LocalKafka, content: str) -> None:
    broker.root.mkdir(parents=True)
    broker.pid_file.write_text(content)
    assert broker.pid() is None
