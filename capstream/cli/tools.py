"""One-shot commands: ``sql``, ``gate``, ``vectors``, ``simulate``, ``bench``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from capstream.cli.base import app, load_settings, out, vectors_app
from capstream.errors import CapstreamError


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
