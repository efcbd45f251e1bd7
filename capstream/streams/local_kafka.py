"""A real Apache Kafka broker on loopback: jars from Maven Central, started with ``java``."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from capstream.errors import KafkaSetupError

DIST = Path(__file__).resolve().parent / "kafka_dist"
_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_KILL_TIMEOUT = 10.0  # seconds to wait after SIGKILL


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What ``capstream kafka status`` reports."""

    running: bool
    pid: int | None
    version: str
    listener: str
    data_dir: Path


def kafka_version() -> str:
    """The Kafka version pinned in the pom."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", (DIST / "pom.xml").read_text())
    if not match:
        raise KafkaSetupError(f"{DIST / 'pom.xml'} names no <kafka.version>")
    return match.group(1)


def _cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "capstream"


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise KafkaSetupError(f"`{tool}` was not found on PATH: {hint}")
    return path


def resolve_classpath(*, quiet: bool = True) -> str:
    """Fetch the broker jars once with Maven and return the classpath (cached per pom)."""
    pom = DIST / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    cached = _cache_dir() / f"kafka-{kafka_version()}-{digest}.classpath"
    if cached.exists():
        classpath = cached.read_text().strip()
        if classpath and all(Path(j).exists() for j in classpath.split(os.pathsep)):
            return classpath
    mvn = _require("mvn", "install Maven (e.g. `apt-get install maven`); it fetches the jars.")
    cached.parent.mkdir(parents=True, exist_ok=True)
    out = cached.with_suffix(".tmp")
    cmd = [mvn, "-B", "-f", str(pom), "dependency:build-classpath", f"-Dmdep.outputFile={out}"]
    if quiet:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise KafkaSetupError(f"Maven could not fetch the Kafka {kafka_version()} jars:\n{tail}")
    out.replace(cached)
    return cached.read_text().strip()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def new_cluster_id() -> str:
    """A random KRaft cluster id (a UUID in URL-safe base64, as ``kafka-storage random-uuid``)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def free_port() -> int:
    """A port the OS considers free right now on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalKafka:
    """One combined KRaft broker+controller whose data and logs live under ``data_dir/kafka``."""

    def __init__(self, data_dir: Path, port: int = 9092, controller_port: int = 9093) -> None:
        self.root = Path(data_dir).resolve() / "kafka"
        self.port = port
        self.controller_port = controller_port
        self.log_dir = self.root / "data"
        self.logs = self.root / "logs"
        self.config = self.root / "server.properties"
        self.pid_file = self.root / "broker.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def up(self, timeout: float = 90.0) -> float:
        """Start the broker (fetching and formatting as needed); return seconds until ready."""
        started = time.monotonic()
        if self.pid() is not None:
            self._wait_ready(timeout)
            return time.monotonic() - started
        java = _require("java", "install a JDK 17+ (e.g. `apt-get install openjdk-17-jre`).")
        for port in (self.port, self.controller_port):
            if not port_is_free(port):
                raise KafkaSetupError(
                    f"port {port} on 127.0.0.1 is in use by another process: stop it, or choose "
                    "other ports with CAPSTREAM_KAFKA_PORT / CAPSTREAM_KAFKA_CONTROLLER_PORT."
                )
        classpath = resolve_classpath()
        self._render_config()
        self._format(java, classpath)
        self.logs.mkdir(parents=True, exist_ok=True)
        cmd = [
            java,
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={DIST / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.logs}",
            "-cp",
            classpath,
            _MAIN_CLASS,
            str(self.config),
        ]
        with open(self.logs / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        try:
            self._wait_ready(timeout, proc)
        except BaseException:
            self.down()
            raise
        return time.monotonic() - started

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``); True if it ran.

        Returns once the JVM has really exited: all its threads, not only the main one, which
        ends first, and, when it is this process's child, with its exit status collected (no
        ``[java] <defunct>`` is left behind).
        """
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_exited(pid, timeout):
            for kill in (os.killpg, os.kill):  # its group, and itself should it lead none
                with contextlib.suppress(ProcessLookupError):
                    kill(pid, signal.SIGKILL)
            if not _wait_exited(pid, _KILL_TIMEOUT):
                raise KafkaSetupError(
                    f"the broker (pid {pid}) did not exit {_KILL_TIMEOUT:.0f}s after SIGKILL; "
                    f"see `ps -o pid,stat,wchan -p {pid}` (a process stuck in the kernel)."
                )
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(
            running=pid is not None and self._answers(),
            pid=pid,
            version=kafka_version(),
            listener=f"PLAINTEXT://{self.bootstrap}",
            data_dir=self.root,
        )

    def pid(self) -> int | None:
        """The pid of this data dir's broker if it is running."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid <= 0 or not _alive(pid):
            return None
        cmdline = _cmdline(pid)
        if cmdline is None:
            return pid
        return pid if _MAIN_CLASS in cmdline and str(self.config) in cmdline else None

    # -- steps -----------------------------------------------------------------------------

    def _render_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        template = (DIST / "server.properties").read_text()
        self.config.write_text(
            template.replace("{port}", str(self.port))
            .replace("{controller_port}", str(self.controller_port))
            .replace("{log_dir}", str(self.log_dir))
        )

    def _format(self, java: str, classpath: str) -> None:
        meta = self.log_dir / "meta.properties"
        if meta.exists():
            text = meta.read_text(errors="replace")
            if "cluster.id=" not in text or "node.id=" not in text:
                raise KafkaSetupError(
                    f"the broker data dir {self.log_dir} is corrupt ({meta} lacks cluster.id): "
                    "run `capstream kafka down --wipe` to start afresh (its topics are lost)."
                )
            return
        proc = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                _STORAGE_TOOL,
                "format",
                # One id in 64 starts with "-": as a separate argument it would be read as
                # an option (the format fails), so it is attached with "=".
                f"--cluster-id={new_cluster_id()}",
                "-c",
                str(self.config),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise KafkaSetupError(
                f"formatting the broker storage in {self.log_dir} failed:\n"
                f"{(proc.stdout + proc.stderr).strip()[-2000:]}"
            )

    def _wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise KafkaSetupError(
                    f"the broker exited with code {proc.returncode} while starting; "
                    f"last lines of {self.logs / 'server.log'}:\n{self._log_tail()}\n"
                    "If the data dir is corrupt, `capstream kafka down --wipe` starts afresh."
                )
            if self._answers():
                return
            time.sleep(0.25)
        raise KafkaSetupError(
            f"the broker did not answer on {self.bootstrap} within {timeout:.0f}s; "
            f"see {self.logs / 'server.log'}:\n{self._log_tail()}"
        )

    def _answers(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            cluster = admin.describe_cluster(request_timeout=2).result(timeout=3)
        except Exception:
            return False
        return bool(cluster.nodes)

    def _log_tail(self, lines: int = 15) -> str:
        for name in ("server.log", "stdout.log"):
            path = self.logs / name
            if path.exists():
                text = path.read_text(errors="replace").strip().splitlines()
                interesting = [
                    ln for ln in text if "ERROR" in ln or "FATAL" in ln or "Exception" in ln
                ]
                return "\n".join((interesting or text)[-lines:])
        return "(no log written)"

    def wipe(self) -> None:
        """Delete the broker's data and logs (it must be stopped)."""
        if self.pid() is not None:
            raise KafkaSetupError("the broker is running: stop it before wiping its data")
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True until every thread of ``pid`` has exited.

    A zombie counts as exited only once its thread group is empty: the JVM's main thread is a
    zombie while its other threads still shut down (and may still hold files and ports).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()
        state, threads = fields[0], int(fields[17])  # stat fields 3 and 20 (proc(5))
    except (OSError, IndexError, ValueError):
        return True
    return state != "Z" or threads > 1


def _wait_exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds until ``pid`` has exited; True if it has.

    When it is this process's child its exit status is collected, so it leaves no zombie;
    otherwise its parent (or init) collects it.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            # The kernel reports a thread-group leader only once all its threads have exited.
            reaped, _ = os.waitpid(pid, os.WNOHANG)
            exited = reaped == pid
        except ChildProcessError:  # not our child (or already collected)
            exited = not _alive(pid)
        if exited or time.monotonic() >= deadline:
            return exited
        time.sleep(0.05)


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid``, read through a live thread once its main thread has ended."""
    proc = Path(f"/proc/{pid}")
    try:
        tids = sorted(os.listdir(proc / "task"))
    except OSError:
        return None
    for task in (proc, *(proc / "task" / tid for tid in tids)):
        with contextlib.suppress(OSError):  # a thread that has just exited
            cmdline = (task / "cmdline").read_bytes()
            if cmdline:
                return cmdline.decode(errors="replace")
    return ""
