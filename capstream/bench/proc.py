"""CPU time and memory of a process, read from /proc (Linux), for per-system figures."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Usage:
    """A sample of one process: CPU seconds so far (user + system), RSS and peak RSS (MiB)."""

    cpu_s: float
    rss_mib: float
    peak_rss_mib: float


def sample(pid: int) -> Usage | None:
    """The process's usage now, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces) start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    mem = {}
    for line in status.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":", 1)
            mem[name] = int(value.split()[0]) / 1024
    return Usage(cpu, mem.get("VmRSS", 0.0), mem.get("VmHWM", 0.0))


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    return os.getloadavg()
