"""The demo's child processes: own process group, stopped and waited for, never orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capstream.demo.processes import ServiceError, Supervisor, wait_until

SERVE = ("http.server", "0", "--bind", "127.0.0.1")  # a long-running stand-in service


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited all the same
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_stop_terminates_each_service_in_its_own_group(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs", os.environ)
    svc = sup.start("web", *SERVE[1:], module=SERVE[0])
    wait_until("serving", lambda: "Serving HTTP" in svc.log.read_text(), 20, svc)
    assert os.getpgid(svc.pid) == svc.pid != os.getpgid(0)  # Ctrl-C reaches only the demo
    assert sup.exited() == []
    codes = sup.stop(timeout=10)
    assert codes == {"web": -signal.SIGTERM}
    assert not alive(svc.pid)


def test_a_service_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs", os.environ)
    svc = sup.start("broken", "no-such-command")  # capstream no-such-command: exit 2
    with pytest.raises(ServiceError, match="broken exited with code 2") as err:
        wait_until("starting", lambda: False, 30, svc)
    assert "No such command" in str(err.value)  # the log's tail tells why
    assert [s.name for s in sup.exited()] == ["broken"]
    assert sup.stop() == {"broken": 2}


def test_wait_until_times_out_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="timed out after 0s waiting for nothing"):
        wait_until("waiting for nothing", lambda: False, 0.2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_children_die_with_the_demo_even_on_kill_9(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", (
            "import os, sys, time\n"
            "from pathlib import Path\n"
            "from capstream.demo.processes import Supervisor\n"
            f"sup = Supervisor(Path({str(tmp_path)!r}), os.environ)\n"
            f"svc = sup.start('web', *{SERVE[1:]!r}, module={SERVE[0]!r})\n"
            "print(svc.pid, flush=True)\n"
            "time.sleep(60)\n"
        )],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 20
    while "Serving HTTP" not in (tmp_path / "web.log").read_text():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    parent.kill()  # the demo is killed outright: no clean-up code runs
    parent.wait(10)
    assert gone_within(child, 10), "the child outlived the demo"
