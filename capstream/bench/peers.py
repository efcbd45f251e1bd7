"""The peers: the naive Faust design and Quix Streams on the same backlog, checked for truth.

Each peer is a script in ``benchmarks/peers/`` run as a subprocess with a JSON config (the
broker, the usage topic, the record offsets to stop at, the time limit, the threshold and
windows, a decisions topic). It writes its figures to a JSON file; its decisions are read
back from its topic and compared with the ground truth of the prefix it processed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import capstream
from capstream.bench.ceilings import Backlog, Progress
from capstream.bench.kafka import create_topic, read_all
from capstream.bench.options import BenchError, Figures
from capstream.bench.truth import Crossing, Verdict, compare
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

PACKAGE = Path(capstream.__file__).resolve().parent
PEERS = PACKAGE.parent / "benchmarks" / "peers"
KILL_AFTER_S = 240.0
"""A peer still running ``max_s`` + this after its launch is killed."""
LABELS = {"faust": "Faust (naive: windowed table write per event)",
          "quix": "Quix Streams (hopping window, RocksDB)"}  # fmt: skip


def peers_dir() -> Path:
    if not (PEERS / "faust_peer.py").exists():
        raise BenchError(
            f"the peers' scripts are not in {PEERS}: run capstream bench from a source "
            "checkout (git clone, then pip install -e '.[bench]')"
        )
    return PEERS


def quix_python(log: Path) -> Path:
    """The Quix peer's interpreter: a virtualenv beside capstream's, made once per
    requirements file (Quix Streams pins older librdkafka and pydantic than capstream)."""
    req = peers_dir() / "requirements-quix.txt"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()[:16]
    venv = Path(sys.prefix) / "quix-peer"
    python = venv / "bin" / "python"
    stamp = venv / f".installed-{digest}"
    if stamp.exists() and python.exists():
        return python
    with log.open("ab") as out:
        for cmd in ([sys.executable, "-m", "venv", "--clear", str(venv)],
                    [str(python), "-m", "pip", "install", "-q", "-r", str(req)]):  # fmt: skip
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode:
                raise BenchError(f"could not prepare the Quix Streams peer ({cmd[2]}); see {log}")
    stamp.touch()
    return python


def peer_config(
    name: str,
    settings: Settings,
    backlog: Backlog,
    work: Path,
    scratch: Path,
    *,
    threshold: int,
    window_ms: int,
    step_ms: int,
    max_s: float,
) -> dict[str, Any]:
    """A peer's JSON config: its config, log and figures go to ``work`` (the results'
    ``logs/``), its state store (RocksDB, tens of MiB) to ``scratch``, deleted after the run."""
    return {
        "bootstrap": settings.bootstrap_servers,
        "topic": Topics(settings.topic_prefix).usage,
        "partitions": len(backlog.values),
        "ends": [len(v) for v in backlog.values],
        "max_s": max_s,
        "flush_timeout_s": max_s,
        "lifetime_s": max_s + KILL_AFTER_S,
        "threshold": threshold,
        "window_ms": window_ms,
        "step_ms": step_ms,
        "out_topic": f"{settings.topic_prefix}.peer-{name}",
        "result": str(work / f"peer-{name}.json"),
        "group": f"peer-{name}-{uuid.uuid4().hex[:8]}",
        "state_dir": str(scratch / f"peer-{name}-state"),
        "schema_dir": str(PACKAGE / "schemas"),
    }


def run_peer(
    name: str,
    python: Path,
    settings: Settings,
    backlog: Backlog,
    work: Path,
    scratch: Path,
    *,
    threshold: int,
    window_ms: int,
    step_ms: int,
    max_s: float,
    progress: Progress,
) -> tuple[Figures, set[Crossing]]:
    """Run one peer on the backlog; (figures, the crossings it published)."""
    config = peer_config(name, settings, backlog, work, scratch, threshold=threshold,
                         window_ms=window_ms, step_ms=step_ms, max_s=max_s)  # fmt: skip
    out_topic, result = config["out_topic"], Path(config["result"])
    create_topic(settings, out_topic, len(backlog.values))
    cfg = work / f"peer-{name}-config.json"
    cfg.write_text(json.dumps(config))
    log = work / f"peer-{name}.log"
    started, launched = time.perf_counter(), time.time()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(python), str(peers_dir() / f"{name}_peer.py"), str(cfg)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            while (code := proc.poll()) is None:
                elapsed = time.perf_counter() - started
                if elapsed > max_s + KILL_AFTER_S:
                    proc.kill()
                    proc.wait()
                    raise BenchError(
                        f"the {name} peer did not finish in {elapsed:.0f} s; see {log}"
                    )
                progress(int(elapsed))
                time.sleep(0.2)
        finally:
            shutil.rmtree(config["state_dir"], ignore_errors=True)
    ended = time.time()
    if code != 0 or not result.exists():
        raise BenchError(f"the {name} peer failed (exit {code}); see {log}")
    r = json.loads(result.read_text())
    crossings: set[Crossing] = set()
    for records in read_all(settings, out_topic):
        for _, _, value in records:
            d = json.loads(value or b"{}")
            crossings.add((d["bot"], int(d["window_start_ms"]), d["event_id"]))
    seconds = r["processed_s"]
    figures = {
        "label": LABELS[name], "events": r["events"], "records": r["records"],
        "seconds": seconds, "events_per_s": r["events"] / seconds if seconds else 0.0,
        "records_per_s": r["records"] / seconds if seconds else 0.0,
        "durable_seconds": r["durable_s"], "complete": r["complete"], "cpu_s": r["cpu_s"],
        "events_per_cpu_s": r["events"] / r["cpu_s"] if r["cpu_s"] else None,
        "peak_rss_mib": r["peak_rss_mib"], "decisions": r["decisions"],
        "startup_s": r["first_event_at"] - launched,
        "exit_s": ended - r["first_event_at"] - (r["durable_s"] or r["processed_s"]),
        "cut": r["cut"],
    }  # fmt: skip
    return figures, crossings


def check(figures: Figures, crossings: set[Crossing], expected: set[Crossing]) -> Verdict:
    """Compare a peer's published crossings with the truth of its prefix."""
    verdict = compare(expected, crossings)
    figures["check"] = verdict.as_dict()
    return verdict
