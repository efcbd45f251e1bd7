"""``capstream demo``: the whole pipeline on the embedded defaults, with traffic and a dashboard.

Starts the local Kafka broker, the worker, the ClickHouse sink (chDB), the notifier with a
local SMTP catcher, the Policy API with the dashboard, provisions the demo tenants through
the API and runs the traffic simulator, showing events and decisions as they flow. Ctrl-C
(or SIGTERM, or ``duration``) stops everything: each child in its own process group is
terminated and waited for, and the broker is stopped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live

from capstream.api.dashboard.mailbox import Mailbox, mailbox_dir
from capstream.demo.display import Counters, Progress
from capstream.demo.mailcatcher import MailCatcher
from capstream.demo.processes import ServiceError, Supervisor, wait_until
from capstream.demo.provision import TenantLogin, provision
from capstream.errors import KafkaSetupError
from capstream.simulator import DEMO_TENANTS, Simulator, TenantScenario
from capstream.streams.local_kafka import LocalKafka, free_port, port_is_free
from capstream.streams.settings import Settings
from capstream.streams.topics import create_topics

SERVICES = ("sink", "worker", "notifier", "api")
START_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What the running demo tells scripts and tests (``<data dir>/demo/demo.json``)."""

    url: str
    api: str
    bootstrap: str
    topic_prefix: str
    data_dir: str
    smtp_port: int
    pids: dict[str, int]
    broker_pid: int | None
    tenants: list[dict[str, str]]


def demo_root(settings: Settings) -> Path:
    """The demo's own data dir (wiped at each start): broker, stores, logs, mailbox."""
    return (settings.data_dir / "demo").resolve()


def _port(preferred: int) -> int:
    return preferred if port_is_free(preferred) else free_port()


def _child_env(s: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CAPSTREAM_DATA_DIR=str(s.data_dir),
        CAPSTREAM_KAFKA_BOOTSTRAP=s.bootstrap_servers,
        CAPSTREAM_TOPIC_PREFIX=s.topic_prefix,
        CAPSTREAM_API_HOST=s.api_host,
        CAPSTREAM_API_PORT=str(s.api_port),
        CAPSTREAM_API_ADMIN_KEY=s.api_admin_key.get_secret_value() if s.api_admin_key else "",
        CAPSTREAM_SMTP_HOST=s.smtp_host,
        CAPSTREAM_SMTP_PORT=str(s.smtp_port),
        CAPSTREAM_SMTP_TLS="none",
        CAPSTREAM_SMTP_USERNAME="",  # the catcher takes mail without login
        CAPSTREAM_WEBHOOK_URL="",  # the demo's notifications stay on this machine
        PYTHONUNBUFFERED="1",
    )
    return env


def _signals_as_interrupt() -> dict[int, Any]:
    """SIGTERM behaves like Ctrl-C (KeyboardInterrupt) so both take the same clean path."""

    def interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    return {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _print_logins(console: Console, url: str, logins: list[TenantLogin]) -> None:
    console.print("\n[bold]Log in to the dashboard with a tenant's API key:[/]")
    for t in logins:
        console.print(f"  [bold]{t.account_id}[/] ({t.plan}) — {t.story}", highlight=False)
        console.print(f"    {t.api_key}", highlight=False, soft_wrap=True)
    console.print(f"\nDashboard: [bold underline blue]{url}/dashboard/[/]")


def run_demo(
    settings: Settings,
    *,
    duration: float | None,
    console: Console,
    tenants: tuple[TenantScenario, ...] = DEMO_TENANTS,
) -> DemoInfo | None:
    """Run the demo until Ctrl-C / SIGTERM, or for ``duration`` seconds; stop it cleanly."""
    root = demo_root(settings)
    LocalKafka(root).down()  # a broker left by a demo that was killed outright
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    previous = _signals_as_interrupt()
    info: DemoInfo | None = None
    started = time.monotonic()
    try:
        with ExitStack() as cleanup:
            try:
                info = _run(settings, root, duration, console, cleanup, started, tenants)
            except KeyboardInterrupt:
                pass
            finally:
                for sig in previous:  # the clean-up runs to the end, whatever the user presses
                    signal.signal(sig, signal.SIG_IGN)
                console.print("\nstopping the simulator, the services and the broker…")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.print("demo stopped: every process it started has exited.")
    return info


def _run(
    base: Settings,
    root: Path,
    duration: float | None,
    console: Console,
    cleanup: ExitStack,
    started: float,
    tenants: tuple[TenantScenario, ...],
) -> DemoInfo:
    broker_pid: int | None = None
    if base.kafka_bootstrap:
        bootstrap = base.kafka_bootstrap
        prefix = f"{base.topic_prefix}-demo-{secrets.token_hex(3)}"
        console.print(f"using the Kafka cluster at {bootstrap} (topics {prefix}.*)")
    else:
        broker = _start_broker(root, base, console, cleanup)
        bootstrap, prefix, broker_pid = broker.bootstrap, base.topic_prefix, broker.pid()
    admin_key = f"csa_{secrets.token_urlsafe(32)}"
    s = base.model_copy(
        update={
            "data_dir": root,
            "kafka_bootstrap": bootstrap,
            "topic_prefix": prefix,
            "api_port": _port(base.api_port),
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port(),
            "api_admin_key": SecretStr(admin_key),
        }
    )
    create_topics(s)
    supervisor = Supervisor(root / "logs", _child_env(s))
    cleanup.callback(_stop_services, supervisor, console)
    services = {name: supervisor.start(name, name) for name in SERVICES}
    mailbox_dir(root).mkdir(parents=True, exist_ok=True)  # the dashboard shows an inbox
    catcher = MailCatcher(Mailbox(mailbox_dir(root)), s.smtp_port).start()
    cleanup.callback(catcher.stop)
    api = f"http://{s.api_host}:{s.api_port}"
    with console.status(f"starting {', '.join(SERVICES)} (logs in {root / 'logs'})…"):
        wait_until("starting the API", lambda: _healthy(api), START_TIMEOUT_S, services["api"])
        logins = provision(api, admin_key, tenants)
        from capstream.sinks.endpoint import endpoint_file
        from capstream.sinks.store import chdb_path, is_embedded

        if is_embedded(s.clickhouse_dsn):
            store = endpoint_file(chdb_path(s.clickhouse_dsn))
            wait_until("starting the sink", store.exists, START_TIMEOUT_S, services["sink"])

    from capstream.gateway import ControlView, Gateway, UsageRecorder

    counters = Counters()
    view = ControlView(s, on_update=counters.on_state)
    gateway = Gateway(s, view=view)
    cleanup.callback(gateway.close)
    recorder = UsageRecorder(s, producer_name="capstream-demo")
    cleanup.callback(recorder.close, 10.0)
    gateway.wait_ready(30)
    simulator = Simulator(gateway, recorder, tenants)
    stop = threading.Event()
    thread = threading.Thread(target=simulator.run, args=(stop,), name="simulator", daemon=True)
    cleanup.callback(thread.join, 10.0)
    cleanup.callback(stop.set)
    thread.start()

    info = DemoInfo(
        url=f"{api}/dashboard/",
        api=api,
        bootstrap=bootstrap,
        topic_prefix=prefix,
        data_dir=str(root),
        smtp_port=s.smtp_port,
        pids={name: svc.pid for name, svc in services.items()},
        broker_pid=broker_pid,
        tenants=[asdict(t) for t in logins],
    )
    path = root / "demo.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds API keys
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(info), fh, indent=2)
    _print_logins(console, api, logins)
    console.print(f"up in {time.monotonic() - started:.1f}s · logs in {root / 'logs'}")

    progress = Progress(info.url, supervisor, simulator, view.states, counters,
                        lambda: recorder.stats.delivered, lambda: catcher.received)  # fmt: skip
    _watch(progress, supervisor, console, duration, thread)
    return info


def _start_broker(root: Path, base: Settings, console: Console, cleanup: ExitStack) -> LocalKafka:
    """The demo's own broker; if its ports were taken meanwhile, once more on free ones."""
    ports = (_port(base.kafka_port), _port(base.kafka_controller_port))
    for attempt in (1, 2):
        broker = LocalKafka(root, *ports)
        cleanup.callback(broker.down)
        try:
            with console.status("starting Kafka (the first run downloads its jars with mvn)…"):
                seconds = broker.up()
        except KafkaSetupError as exc:
            taken = not all(port_is_free(p) for p in ports)
            if attempt == 2 or not taken:
                raise
            console.print(f"Kafka could not start ({str(exc).splitlines()[0]}); other ports…")
            broker.down()
            broker.wipe()
            ports = (free_port(), free_port())
            continue
        console.print(f"Kafka is up on {broker.bootstrap} ({seconds:.1f}s)")
        return broker
    raise AssertionError("unreachable")


def _watch(
    progress: Progress,
    supervisor: Supervisor,
    console: Console,
    duration: float | None,
    simulator: threading.Thread,
) -> None:
    """Show progress until ``duration`` passes (or forever); fail if a service dies."""
    end = time.monotonic() + duration if duration else None
    last_line = 0.0
    with Live(progress, console=console, refresh_per_second=2, transient=False) as live:
        while end is None or time.monotonic() < end:
            time.sleep(0.5)
            dead = supervisor.exited()
            if dead:
                s = dead[0]
                raise ServiceError(
                    f"{s.name} stopped unexpectedly (exit code {s.proc.returncode}); last lines "
                    f"of {s.log}:\n{s.log_tail()}"
                )
            if not simulator.is_alive():
                raise ServiceError("the traffic simulator stopped unexpectedly")
            if not console.is_terminal and time.monotonic() - last_line >= 10:
                last_line = time.monotonic()
                live.console.print(progress.line())


def _stop_services(supervisor: Supervisor, console: Console) -> None:
    codes = supervisor.stop()
    odd = {n: c for n, c in codes.items() if c not in (0, -signal.SIGTERM, 130, 143)}
    if odd:
        console.print(f"services exited: {codes} (logs in {supervisor.log_dir})")
