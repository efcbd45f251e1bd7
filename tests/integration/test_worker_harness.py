"""Helpers for the processors' broker tests: a worker subprocess, topic readers, publishers.

No tests here: the other ``test_processors*`` / ``test_worker*`` modules import it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from capstream.core import EnforcementState
from capstream.streams.control_wire import decode_state
from capstream.streams.partitioner import partition_for
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class WorkerProcess:
    """``capstream worker`` in a subprocess (its own data dir), with metrics and kill."""

    def __init__(
        self, settings: Settings, *, event_time: bool = False, argv: list[str] | None = None,
        **env: str,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        self.log_path = self.data_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / "metrics.port"
        port_file.unlink(missing_ok=True)
        self.env = {
            **os.environ,
            "CAPSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "CAPSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "CAPSTREAM_DATA_DIR": str(self.data_dir),
            "CAPSTREAM_USAGE_PARTITIONS": str(settings.usage_partitions),
            "CAPSTREAM_CONTROL_PARTITIONS": str(settings.control_partitions),
            "CAPSTREAM_WORKER_FLUSH_INTERVAL": "0.2",
            "CAPSTREAM_WORKER_EVENT_TIME": "true" if event_time else "false",
            **env,
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "capstream.cli", "worker"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.port = int(wait_for(lambda: self._port(port_file), 60, "the metrics endpoint"))

    def _port(self, port_file: Path) -> str:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
        return port_file.read_text().strip() if port_file.exists() else ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def metrics(self) -> dict[str, float]:
        """Every sample of the metrics endpoint: ``name{labels}`` -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, prefix: str) -> float:
        """The sum of the samples whose ``name{labels}`` starts with ``prefix``."""
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"worker ignored SIGTERM:\n{self.log()}") from None
        self._log.close()
        return self.proc.returncode

    def pause(self) -> None:
        """SIGSTOP: the whole process freezes (a long GC pause, a stalled VM)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def paused(self) -> bool:
        """True while the process is stopped (it may have stopped itself)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] == "T"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        """Whatever happened in the test, this worker does not outlive it."""
        if self.proc.poll() is None:
            self.kill()


class TopicLog:
    """Every record of some topics from the beginning, read by a background thread."""

    def __init__(self, settings: Settings, *topics: str) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        conf = {**settings.librdkafka_config(), "group.id": f"log-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False}  # fmt: skip
        self._consumer = Consumer(conf)
        meta = self._consumer.list_topics(timeout=10).topics
        self._consumer.assign(
            [
                TopicPartition(t, p, OFFSET_BEGINNING)
                for t in topics
                for p in (meta[t].partitions if t in meta else {0: None})
            ]
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.1):
                if msg.error() is None:
                    with self._lock:
                        self.records.append((msg.topic(), msg.key(), msg.value()))
        self._consumer.close()

    def of(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        with self._lock:
            return [(k, v) for t, k, v in self.records if t == topic]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class ControlLog(TopicLog):
    """The control topic as decoded states, in the order they were published."""

    def __init__(self, settings: Settings) -> None:
        self.topic = Topics(settings.topic_prefix).control
        super().__init__(settings, self.topic)

    def states(self, account_id: str, bot_id: str | None = None) -> list[EnforcementState]:
        out = []
        for _, value in self.of(self.topic):
            if value is None:
                continue
            s = decode_state(value)
            if s.account_id == account_id and (bot_id is None or s.bot_id == bot_id):
                out.append(s)
        return out

    def own_latest(self, account_id: str, bot_id: str) -> EnforcementState | None:
        """The bot's own newest state published (``*``: the account's), tombstones aside."""
        states = self.states(account_id, bot_id)
        return max(states, key=lambda s: s.version) if states else None

    def latest(self, account_id: str, bot_id: str) -> EnforcementState | None:
        """What a gateway's ``ControlView.get`` answers now: the bot's newest state unless a
        tombstone followed it (the bot follows its account), else the account's ``*``."""
        held: dict[bytes, EnforcementState] = {}
        for key, value in self.of(self.topic):
            if key is None:
                continue
            if value is None:
                held.pop(key, None)
                continue
            s = decode_state(value)
            if s.account_id == account_id and (key not in held or held[key].version < s.version):
                held[key] = s
        own = held.get(f"{account_id}/{bot_id}".encode())
        return own if own is not None else held.get(f"{account_id}/*".encode())

    def wait(
        self, account_id: str, bot_id: str, check: Callable[[EnforcementState], bool],
        timeout: float = 30, *, own: bool = False,
    ) -> EnforcementState:  # fmt: skip
        """The state gateways hold for the bot (:meth:`latest`; ``own``: the bot's own newest
        state, :meth:`own_latest`) once ``check`` passes."""

        def found() -> EnforcementState | None:
            s = self.own_latest(account_id, bot_id) if own else self.latest(account_id, bot_id)
            return s if s is not None and check(s) else None

        return wait_for(found, timeout, f"a control state of {account_id}/{bot_id}")


class Admin:
    """Publishes policies and tenant settings like the Policy API does."""

    def __init__(self, settings: Settings) -> None:
        self.topics = Topics(settings.topic_prefix)
        self.producer = Producer(
            {**settings.librdkafka_config(), "acks": "all", "partitioner": "murmur2_random"}
        )

    def policy(self, account_id: str, policy_id: str, **fields: Any) -> None:
        record = PolicyRecord(account_id=account_id, policy_id=policy_id, **fields)
        self._send(self.topics.policies, f"{account_id}/{policy_id}", record.to_bytes())

    def delete_policy(self, account_id: str, policy_id: str) -> None:
        self._send(self.topics.policies, f"{account_id}/{policy_id}", None)

    def settings(self, account_id: str, **fields: Any) -> None:
        record = TenantSettingsRecord(account_id=account_id, **fields)
        self._send(self.topics.tenants, account_id, record.to_bytes())

    def raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.producer.produce(topic, value, key)
        assert self.producer.flush(10) == 0

    def _send(self, topic: str, key: str, value: bytes | None) -> None:
        self.producer.produce(topic, value, key.encode())
        assert self.producer.flush(10) == 0


class Config:
    """Publishes policies/settings and waits until the worker has applied them."""

    def __init__(self, settings: Settings, worker: WorkerProcess) -> None:
        self.admin = Admin(settings)
        self.worker = worker

    def applied(self) -> float:
        return self.worker.metric("capstream_processor_catalog_records_total")

    def policy(self, account: str, policy_id: str, **fields: object) -> None:
        before = self.applied()
        self.admin.policy(account, policy_id, **fields)
        wait_for(lambda: self.applied() > before, 20, "the worker to read the policy")

    def settings(self, account: str, **fields: object) -> None:
        before = self.applied()
        self.admin.settings(account, **fields)
        wait_for(lambda: self.applied() > before, 20, "the worker to read the settings")


def account_on(partition: int, partitions: int, stem: str) -> str:
    """An account id (``stem-N``) that Kafka's default partitioner puts on ``partition``."""
    for n in range(10_000):
        name = f"{stem}-{n}"
        if partition_for(name.encode(), partitions) == partition:
            return name
    raise AssertionError("no account name found")
