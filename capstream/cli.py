"""The ``capstream`` command: one CLI, a subcommand per process or chore."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from capstream.errors import CapstreamError
from capstream.streams.settings import Settings

app = typer.Typer(
    name="capstream",
    help="Real-time usage guardrails for bot platforms (Kafka + Faust + ClickHouse).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
kafka_app = typer.Typer(
    help="Run a real local Apache Kafka broker (KRaft, one node).", no_args_is_help=True
)
topics_app = typer.Typer(help="Create and list capstream's topics.", no_args_is_help=True)
vectors_app = typer.Typer(
    help="The shared test vectors every gateway SDK (Python, TypeScript) must pass.",
    no_args_is_help=True,
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(vectors_app, name="vectors")

SERVER_MODULES = frozenset({
    "faust", "mode", "rocksdict", "aiokafka", "clickhouse_connect", "chdb", "fastapi",
    "starlette", "uvicorn", "aiosmtplib", "aiosmtpd", "httpx", "prometheus_client",
})  # fmt: skip
"""Top-level modules of the ``server`` extra (pyproject.toml): not in a light install."""

out = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    """Build the process's settings from ``CAPSTREAM_*`` variables, or explain what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"  CAPSTREAM_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        ]
        raise CapstreamError("invalid settings:\n" + "\n".join(lines)) from exc


def _local_kafka(settings: Settings):  # type: ignore[no-untyped-def]
    from capstream.streams.local_kafka import LocalKafka

    return LocalKafka(settings.data_dir, settings.kafka_port, settings.kafka_controller_port)


@kafka_app.command("up")
def kafka_up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 90.0,
) -> None:
    """Fetch the jars (once), format storage and start the broker in the background."""
    settings = load_settings()
    if settings.kafka_bootstrap:
        out.print(
            f"CAPSTREAM_KAFKA_BOOTSTRAP is set: using {settings.kafka_bootstrap}, "
            "no local broker started."
        )
        return
    broker = _local_kafka(settings)
    with out.status("starting Kafka (the first run downloads its jars with mvn)..."):
        seconds = broker.up(timeout)
    out.print(
        f"Kafka is up on [bold]{broker.bootstrap}[/] ({seconds:.1f}s); "
        f"data and logs in {broker.root}"
    )


@kafka_app.command("down")
def kafka_down(
    wipe: Annotated[bool, typer.Option(help="Also delete the broker's data and logs.")] = False,
) -> None:
    """Stop the local broker cleanly."""
    broker = _local_kafka(load_settings())
    stopped = broker.down()
    out.print("Kafka stopped." if stopped else "Kafka was not running.")
    if wipe:
        broker.wipe()
        out.print(f"Deleted {broker.root}.")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs, its version and listener."""
    settings = load_settings()
    if settings.kafka_bootstrap:
        out.print(f"using an external cluster: {settings.kafka_bootstrap}")
        return
    st = _local_kafka(settings).status()
    state = "[green]running[/]" if st.running else "[red]stopped[/]"
    out.print(f"Kafka {st.version}: {state}" + (f" (pid {st.pid})" if st.pid else ""))
    out.print(f"listener: {st.listener}")
    out.print(f"data dir: {st.data_dir}")
    if not st.running:
        raise typer.Exit(3)


@topics_app.command("create")
def topics_create() -> None:
    """Create every capstream topic that is missing (idempotent)."""
    from capstream.streams.topics import create_topics

    for name, outcome in sorted(create_topics(load_settings()).items()):
        out.print(f"{outcome:>8}  {name}")


@topics_app.command("list")
def topics_list() -> None:
    """List capstream's topics with partitions and configs."""
    from capstream.streams.topics import topic_specs

    for spec in topic_specs(load_settings()):
        conf = ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
        out.print(f"{spec.name:<32} p={spec.partitions:<3} {conf}")


@app.command("demo")
def demo(
    duration: Annotated[
        float | None,
        typer.Option(min=1, help="Stop by itself after this many seconds (default: Ctrl-C)."),
    ] = None,
) -> None:
    """Run the whole pipeline with simulated tenants and the dashboard; Ctrl-C stops it all."""
    from capstream.demo import run_demo

    run_demo(load_settings(), duration=duration, console=out)


@app.command("api")
def api() -> None:
    """Serve the Policy API (FastAPI; OpenAPI at /docs) on CAPSTREAM_API_HOST:PORT."""
    from capstream.api.server import serve_api

    serve_api(load_settings(), out.print)


@app.command("notifier")
def notifier(
    status: Annotated[bool, typer.Option(help="Print the sent-log's counts and exit.")] = False,
    metrics_port: Annotated[
        int,
        typer.Option(
            min=-1,
            max=65535,
            envvar="CAPSTREAM_NOTIFIER_METRICS_PORT",
            help="Prometheus port; 0 = free port (in <data dir>/notifier/metrics.port); -1 = none.",
        ),
    ] = 0,
) -> None:
    """Deliver notifications (SMTP email, signed webhooks), each id at most once."""
    settings = load_settings()
    if status:
        from capstream.notifier.sentlog import SentLog
        from capstream.notifier.service import sentlog_path

        path = sentlog_path(settings.data_dir)
        counts = SentLog(path).counts() if path.exists() else {}
        for name in ("pending", "sent", "failed", "expired", "uncertain", "sending"):
            out.print(f"{name:>10}  {counts.get(name, 0)}")
        return
    from capstream.notifier.service import run_notifier

    counts = run_notifier(settings, metrics_port=None if metrics_port < 0 else metrics_port)
    out.print(f"notifier stopped: {counts}")


@app.command("sink")
def sink(
    batch_mib: Annotated[
        float,
        typer.Option(
            envvar="CAPSTREAM_SINK_BATCH_MIB", help="Write a partition's batch at this size."
        ),
    ] = 24.0,
    flush_interval: Annotated[
        float,
        typer.Option(envvar="CAPSTREAM_SINK_FLUSH_INTERVAL", help="...or when it is this old (s)."),
    ] = 0.5,
    max_buffer_mib: Annotated[
        float,
        typer.Option(envvar="CAPSTREAM_SINK_MAX_BUFFER_MIB", help="Pause reading above this."),
    ] = 96.0,
    retention_days: Annotated[
        int,
        typer.Option(envvar="CAPSTREAM_SINK_RETENTION_DAYS", help="Raw rows' TTL; 0 = keep."),
    ] = 395,
    rollup_retention_days: Annotated[
        int,
        typer.Option(envvar="CAPSTREAM_SINK_ROLLUP_RETENTION_DAYS", help="Rollups' TTL; 0 = keep."),
    ] = 0,
    group: Annotated[
        str | None,
        typer.Option(envvar="CAPSTREAM_SINK_GROUP", help="Consumer group (<prefix>.sink)."),
    ] = None,
    session_timeout: Annotated[
        float,
        typer.Option(envvar="CAPSTREAM_SINK_SESSION_TIMEOUT", help="Group session timeout (s)."),
    ] = 10.0,
) -> None:
    """Write usage, decisions, cap hits, notifications and feed rows to ClickHouse, once each."""
    from capstream.sinks.commands import sink_command

    sink_command(
        load_settings(),
        out,
        batch_mib=batch_mib,
        flush_interval_s=flush_interval,
        max_buffer_mib=max_buffer_mib,
        retention_days=retention_days,
        rollup_retention_days=rollup_retention_days,
        group=group,
        session_timeout_s=session_timeout,
    )


@app.command("worker")
def worker(
    flush_interval: Annotated[
        float,
        typer.Option(envvar="CAPSTREAM_WORKER_FLUSH_INTERVAL", help="Write dirty state every (s)."),
    ] = 2.0,
    event_time: Annotated[
        bool,
        typer.Option(
            "--event-time/--wall-clock",
            envvar="CAPSTREAM_WORKER_EVENT_TIME",
            help="Clock: newest occurred_at per partition (replays, backtests) or wall clock.",
        ),
    ] = False,
    max_skew: Annotated[
        float,
        typer.Option(envvar="CAPSTREAM_WORKER_MAX_SKEW", help="Future timestamps beyond (s): DLQ."),
    ] = 300.0,
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="CAPSTREAM_WORKER_METRICS_PORT",
            help="Prometheus port; 0 = free port (in <data dir>/metrics.port); -1 = none.",
        ),
    ] = 0,
    group: Annotated[
        str | None,
        typer.Option(envvar="CAPSTREAM_WORKER_GROUP", help="Faust app id (<prefix>.processors)."),
    ] = None,
    loglevel: Annotated[str, typer.Option(envvar="CAPSTREAM_WORKER_LOGLEVEL")] = "warning",
    session_timeout: Annotated[
        float,
        typer.Option(
            envvar="CAPSTREAM_WORKER_SESSION_TIMEOUT",
            help="Group session timeout (s): a silent worker loses its partitions after it.",
        ),
    ] = 10.0,
    profile_to: Annotated[
        str | None, typer.Option(help="Write cProfile stats of the run here (benchmarks).")
    ] = None,
) -> None:
    """Run the stream processors: usage tables, decisions, timers, feed rows (Faust)."""
    from pathlib import Path

    from capstream.processors.options import WorkerOptions
    from capstream.processors.worker import run_worker

    options = WorkerOptions(
        group_id=group or None,
        flush_interval_s=flush_interval,
        event_time=event_time,
        max_future_skew_s=max_skew,
        metrics_port=None if metrics_port < 0 else metrics_port,
        session_timeout_s=session_timeout,
        profile_to=Path(profile_to) if profile_to else None,
    )
    run_worker(load_settings(), options, loglevel=loglevel)


@app.command("sql")
def sql(
    query: Annotated[str, typer.Argument(help="One read-only statement ({name:Type} params).")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value (repeatable).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Run a read-only query on the ClickHouse store (through the sink when it holds chDB)."""
    from capstream.sinks.commands import sql_command

    sql_command(load_settings(), query, param or [], fmt, out)


@app.command("gate")
def gate(
    account: Annotated[str, typer.Argument(help="account_id")],
    bot: Annotated[str, typer.Argument(help="bot_id")],
    category: Annotated[str, typer.Option(help="text, vision, audio or documents.")] = "text",
    conversation: Annotated[str, typer.Option(help="conversation_id")] = "cli-check",
    timeout: Annotated[float, typer.Option(help="Seconds to read the control topic.")] = 30.0,
) -> None:
    """Show a bot's enforcement state and the verdict a gateway would give now (a dry run)."""
    from capstream.gateway.commands import gate_command

    gate_command(load_settings(), account, bot, conversation, category, timeout, out)


@vectors_app.command("generate")
def vectors_generate(
    out_dir: Annotated[str, typer.Option("--out", help="Folder to write.")] = "testdata/vectors",
) -> None:
    """Write the vectors from the Python core and codecs (commit them with the change)."""
    from pathlib import Path

    from capstream.gateway.vectors import write

    for path in write(Path(out_dir)):
        out.print(f"wrote {path}")


@vectors_app.command("check")
def vectors_check(
    out_dir: Annotated[str, typer.Option("--dir", help="Folder to check.")] = "testdata/vectors",
) -> None:
    """Exit 1 if the committed vectors differ from what `generate` would write now."""
    from pathlib import Path

    from capstream.gateway.vectors import stale

    changed = stale(Path(out_dir))
    if changed:
        raise CapstreamError(
            f"stale test vectors in {out_dir}: {', '.join(changed)}; run `capstream vectors "
            "generate` and commit the result"
        )
    out.print(f"test vectors in {out_dir} are current")


@app.command("simulate")
def simulate(
    account: Annotated[str, typer.Argument(help="account_id")],
    policy: Annotated[
        str | None, typer.Option("--policy", help="A draft usage policy (JSON file).")
    ] = None,
    settings_file: Annotated[
        str | None, typer.Option("--settings", help="Draft cap behaviour (JSON file).")
    ] = None,
    replaces: Annotated[
        str | None, typer.Option("--replaces", help="The policy the draft stands in for.")
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Start (ISO 8601 or epoch ms; default 30 days ago)."),
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="End (default now).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Try a draft policy or cap behaviour on the account's past traffic (at most 93 days)."""
    from pathlib import Path

    from capstream.simulation.commands import simulate_command

    simulate_command(
        load_settings(), account, Path(policy) if policy else None,
        Path(settings_file) if settings_file else None, replaces, from_, to, fmt, out,
    )  # fmt: skip


@app.command("bench")
def bench(
    quick: Annotated[bool, typer.Option(help="Small backlog, short phases (< 3 min).")] = False,
    events: Annotated[int | None, typer.Option(min=1000, help="Backlog size.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated workload.")] = 7,
    peers: Annotated[str, typer.Option(help="Peers to run: faust,quix (or none).")] = "faust,quix",
    components: Annotated[
        bool | None, typer.Option(help="Also run benchmarks/bench_*.py (default: full only).")
    ] = None,
    profile: Annotated[bool, typer.Option(help="cProfile the max-rate worker.")] = False,
    out_dir: Annotated[str, typer.Option("--out", help="Results folder.")] = "bench-results",
) -> None:
    """Benchmark capstream against its peers on one broker and stream; write bench-results/."""
    from capstream.bench import run_bench
    from capstream.bench.options import from_cli

    options = from_cli(quick, events, seed, peers, components, profile, out_dir)
    run_bench(load_settings(), options, out, " ".join(["capstream", *sys.argv[1:]]))


def main() -> None:
    """Entry point: run the CLI and turn capstream errors into one clear message."""
    try:
        app()
    except CapstreamError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in SERVER_MODULES:
            raise
        err.print(
            f"[bold red]error:[/] this command runs a server process and needs {exc.name}, "
            "which the light install (the gateway SDK) leaves out: "
            "pip install 'capstream\\[server]'",  # \[: not rich markup
            highlight=False,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
