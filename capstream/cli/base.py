"""The ``capstream`` Typer apps, the consoles and the settings every command reads."""

from __future__ import annotations

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
