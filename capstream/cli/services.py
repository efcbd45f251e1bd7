"""The long-running processes: ``demo``, ``api``, ``notifier``, ``sink``, ``worker``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from capstream.cli.base import app, load_settings, out


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


def _given(**options: Any) -> dict[str, Any]:
    """The options given on the command line: the rest come from the environment
    (``CAPSTREAM_SINK_*``, ``CAPSTREAM_WORKER_*``) or the options model's defaults."""
    return {name: value for name, value in options.items() if value is not None}


@app.command("sink")
def sink(
    batch_mib: Annotated[
        float | None,
        typer.Option(help="Write a partition's batch at this size (MiB)."),
    ] = None,
    flush_interval: Annotated[
        float | None, typer.Option(help="...or when it is this old (s).")
    ] = None,
    max_buffer_mib: Annotated[
        float | None, typer.Option(help="Pause reading above this (MiB).")
    ] = None,
    retention_days: Annotated[int | None, typer.Option(help="Raw rows' TTL; 0 = keep.")] = None,
    rollup_retention_days: Annotated[
        int | None, typer.Option(help="Rollups' TTL; 0 = keep.")
    ] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (<prefix>.sink).")] = None,
    session_timeout: Annotated[
        float | None, typer.Option(help="Group session timeout (s).")
    ] = None,
) -> None:
    """Write usage, decisions, cap hits, notifications and feed rows to ClickHouse, once each.

    Every option is also a CAPSTREAM_SINK_* variable (CAPSTREAM_SINK_BATCH_MIB, ...)."""
    from capstream.sinks.commands import sink_command
    from capstream.sinks.options import SinkOptions
    from capstream.streams.env_options import MIB

    options = SinkOptions(
        **_given(
            batch_bytes=None if batch_mib is None else int(batch_mib * MIB),
            flush_interval_s=flush_interval,
            max_buffered_bytes=None if max_buffer_mib is None else int(max_buffer_mib * MIB),
            retention_days=retention_days,
            rollup_retention_days=rollup_retention_days,
            group_id=group,
            session_timeout_s=session_timeout,
        )
    )
    sink_command(load_settings(), out, options)


@app.command("worker")
def worker(
    flush_interval: Annotated[
        float | None, typer.Option(help="Write dirty state every (s).")
    ] = None,
    event_time: Annotated[
        bool | None,
        typer.Option(
            "--event-time/--wall-clock",
            help="Clock: newest occurred_at per partition (replays, backtests) or wall clock.",
            show_default=False,
        ),
    ] = None,
    max_skew: Annotated[
        float | None, typer.Option(help="Future timestamps beyond (s): DLQ.")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Prometheus port; 0 = free port (in <data dir>/metrics.port); -1 = none.",
        ),
    ] = None,
    group: Annotated[str | None, typer.Option(help="Faust app id (<prefix>.processors).")] = None,
    loglevel: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    session_timeout: Annotated[
        float | None,
        typer.Option(
            help="Group session timeout (s): a silent worker loses its partitions after it.",
        ),
    ] = None,
    heartbeat_interval: Annotated[
        float | None,
        typer.Option(help="Heartbeat every (s); at most a third of the session timeout."),
    ] = None,
    standby_replicas: Annotated[
        int | None,
        typer.Option(help="Other workers keeping each partition's tables warm (0 = none)."),
    ] = None,
    profile_to: Annotated[
        str | None, typer.Option(help="Write cProfile stats of the run here (benchmarks).")
    ] = None,
) -> None:
    """Run the stream processors: usage tables, decisions, timers, feed rows (Faust).

    Every option is also a CAPSTREAM_WORKER_* variable (CAPSTREAM_WORKER_FLUSH_INTERVAL, ...)."""
    from capstream.processors.options import WorkerOptions
    from capstream.processors.worker import run_worker

    options = WorkerOptions(
        **_given(
            group_id=group,
            flush_interval_s=flush_interval,
            event_time=event_time,
            max_future_skew_s=max_skew,
            metrics_port=metrics_port,
            session_timeout_s=session_timeout,
            heartbeat_interval_s=heartbeat_interval,
            standby_replicas=standby_replicas,
            loglevel=loglevel,
            profile_to=profile_to,
        )
    )
    run_worker(load_settings(), options)
