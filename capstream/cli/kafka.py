"""``capstream kafka ...`` (a local broker) and ``capstream topics ...``."""

from __future__ import annotations

from typing import Annotated

import typer

from capstream.cli.base import kafka_app, load_settings, out, topics_app
from capstream.streams.settings import Settings


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
