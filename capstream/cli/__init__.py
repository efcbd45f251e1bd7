"""The ``capstream`` command: one CLI, a subcommand per process or chore.

``base.py`` holds the Typer apps and the settings loader; the commands live in
``kafka.py`` (local broker, topics), ``services.py`` (the long-running processes) and
``tools.py`` (one-shot chores). Each command imports its server modules on demand, so the
light install (the gateway SDK) can run ``capstream gate`` and ``capstream vectors``.
"""

from __future__ import annotations

import sys

from capstream.cli import kafka, services, tools
from capstream.cli.base import app, err, load_settings, out
from capstream.errors import CapstreamError

__all__ = ["SERVER_MODULES", "app", "kafka", "load_settings", "main", "out", "services", "tools"]

SERVER_MODULES = frozenset({
    "faust", "mode", "rocksdict", "aiokafka", "clickhouse_connect", "chdb", "fastapi",
    "starlette", "uvicorn", "aiosmtplib", "aiosmtpd", "httpx", "prometheus_client",
})  # fmt: skip
"""Top-level modules of the ``server`` extra (pyproject.toml): not in a light install."""


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
