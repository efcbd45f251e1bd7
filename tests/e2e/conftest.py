"""Browser-test fixtures: the system Chromium driven by Playwright, and a running demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from capstream.streams.local_kafka import free_port

CHROMIUM = Path(os.environ.get("CAPSTREAM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SHOTS = Path(__file__).parent / "screenshots"
DEMO_SAFETY_S = 300  # the demo stops by itself after this, should a test hang


@dataclass
class RunningDemo:
    """``capstream demo`` started by the test: its process, what it reported, its output."""

    proc: subprocess.Popen[bytes]
    info: dict[str, Any]
    output: Path

    def key(self, account_id: str) -> str:
        return next(t["api_key"] for t in self.info["tenants"] if t["account_id"] == account_id)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium, or a skip saying how to get it."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install it with "
            "`apt-get update && apt-get install -y chromium` (or set CAPSTREAM_CHROMIUM)"
        )
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def demo(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """``capstream demo`` on free ports in a fresh data dir (a broker of its own unless
    ``CAPSTREAM_KAFKA_BOOTSTRAP`` names one); stopped with Ctrl-C (SIGINT) at the end."""
    root = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "CAPSTREAM_DATA_DIR": str(root),
        "CAPSTREAM_KAFKA_PORT": str(free_port()),
        "CAPSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
        "CAPSTREAM_API_PORT": str(free_port()),
        "COLUMNS": "160",
    }
    output = root / "demo.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "capstream.cli", "demo", "--duration", str(DEMO_SAFETY_S)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    info_file = root / "demo" / "demo.json"
    running = RunningDemo(proc, {}, output)
    try:
        deadline = time.monotonic() + 150
        while not info_file.exists():
            assert proc.poll() is None, f"the demo exited early:\n{running.tail()}"
            assert time.monotonic() < deadline, f"the demo did not come up:\n{running.tail()}"
            time.sleep(0.5)
        time.sleep(0.2)  # written in one go, but let the writer finish
        running.info = json.loads(info_file.read_text())
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
