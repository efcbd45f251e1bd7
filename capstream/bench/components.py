"""Per-component figures: the other benchmarks in ``benchmarks/`` run as they are, on our broker.

Each prints its own figures; the suite keeps their lines verbatim (their formats belong to
their authors) and says which command reproduces them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from capstream.bench.options import Figures
from capstream.bench.peers import PACKAGE

COMPONENTS: dict[str, list[str]] = {
    "bench_core (decision core, one thread)": ["bench_core.py", "--events", "100000",
                                               "--calls", "200000"],
    "bench_gateway (SDK: gate, record, decision to verdict)": [
        "bench_gateway.py", "--calls", "300000", "--events", "200000", "--decisions", "200"],
    "bench_sink (ClickHouse writer into embedded chDB)": [
        "bench_sink.py", "--events", "200000", "--seconds", "10", "--rate", "10000"],
}  # fmt: skip


def run_component(name: str, bootstrap: str, timeout: float = 240.0) -> Figures:
    """Run one component benchmark; its output lines, exit code and duration."""
    script, *args = COMPONENTS[name]
    path = PACKAGE.parent / "benchmarks" / script
    cmd = [sys.executable, str(path), *args]
    env = {**os.environ, "CAPSTREAM_KAFKA_BOOTSTRAP": bootstrap}
    t = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        code: int | None = done.returncode
        if code:
            lines += ["(stderr)", *done.stderr.strip().splitlines()[-8:]]
    except subprocess.TimeoutExpired:
        lines, code = [f"(stopped after {timeout:.0f} s)"], None
    shown = f".venv/bin/python benchmarks/{script} {' '.join(args)}"
    return {"command": shown, "exit_code": code, "seconds": time.perf_counter() - t,
            "lines": lines}  # fmt: skip
