"""``capstream simulate``: a draft on an account's past traffic, from the terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from capstream.simulation.draft import (
    SimulationError,
    body_from_file,
    check_draft,
    check_range,
    configs,
    now_ms,
    parse_body,
    parse_instant,
)
from capstream.simulation.run import simulate
from capstream.simulation.source import EventSource, Query, reads_attributes
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings


class ConfigView(Protocol):
    """The current policies and tenant settings (``capstream.api.view.TopicView`` fits)."""

    def policies(self, account_id: str) -> list[PolicyRecord]: ...
    def tenant(self, account_id: str) -> TenantSettingsRecord | None: ...


def simulate_command(
    settings: Settings,
    account_id: str,
    policy_file: Path | None,
    settings_file: Path | None,
    replaces: str | None,
    from_: str | None,
    to: str | None,
    fmt: str,
    out: Console,
    *,
    view: ConfigView | None = None,
    query: Query | None = None,
    known: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Check the input, read the current configuration (topics) and the events (ClickHouse),
    simulate with a progress bar, print a table (or JSON); returns the result."""
    if fmt not in ("table", "json"):
        raise SimulationError(f"--format must be table or json, not {fmt!r}", field="format")
    if (policy_file is None) == (settings_file is None):
        raise SimulationError(
            "give exactly one draft: --policy FILE (a usage policy) or --settings FILE (cap "
            "behaviour)",
            field="policy",
        )
    data: dict[str, Any] = {}
    if policy_file is not None:
        data["policy"] = body_from_file(policy_file, "policy")
    if settings_file is not None:
        data["settings"] = body_from_file(settings_file, "settings")
    if replaces:
        data["replaces"] = replaces
    body = parse_body(data)
    now = now_ms()
    lo, hi = check_range(parse_instant(from_, "from"), parse_instant(to, "to"), now)
    owned: list[Callable[[], None]] = []
    try:
        if view is None:
            from capstream.api.view import TopicView

            topic_view = TopicView(settings)
            topic_view.start()
            owned.append(topic_view.stop)
            view = topic_view
        if known is None:
            known = _known_accounts(settings, view)
        if not known(account_id):
            raise SimulationError(f"unknown account {account_id!r}", field="account")
        policies = view.policies(account_id)
        tenant = view.tenant(account_id) or TenantSettingsRecord(account_id=account_id)
        draft = check_draft(account_id, body, policies, tenant, now)
        current, drafted = configs(policies, tenant, draft)
        if query is None:
            from capstream.api.clickhouse import clickhouse_query

            query = clickhouse_query(settings)
        source = EventSource(
            query, account_id, lo, hi, columns=getattr(query, "columns", None),
            attributes=reads_attributes(current.policies, drafted.policies),
        )  # fmt: skip
        with Progress(
            TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True, disable=fmt == "json",
        ) as bar:  # fmt: skip
            task = bar.add_task("events", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = simulate(source, current, drafted, draft, progress=progress)
    finally:
        for close in owned:
            close()
    if fmt == "json":
        out.print_json(json.dumps(result))
    else:
        print_report(result, out)
    return result


def _known_accounts(settings: Settings, view: ConfigView) -> Callable[[str], bool]:
    """An account is known if the API's account store has it, or (no store here) if the
    topics hold its settings or policies."""
    from capstream.api.app import accounts_path

    path = accounts_path(settings.data_dir)
    if path.exists():
        from capstream.api.accounts import AccountStore

        def in_store(account_id: str) -> bool:
            store = AccountStore(path)
            try:
                return store.exists(account_id)
            finally:
                store.close()

        return in_store
    return lambda a: view.tenant(a) is not None or bool(view.policies(a))


def print_report(result: dict[str, Any], out: Console) -> None:
    """The side-by-side table, then each side's alerts, blocks and cap periods."""
    cur, sim = result["current"], result["simulated"]
    out.print(
        f"account [bold]{result['account_id']}[/]: {result['events']} events, "
        f"{_day(result['from_ms'], result['timezone'])} to "
        f"{_day(result['to_ms'], result['timezone'])} "
        f"({result['timezone']})"
    )
    table = Table(header_style="bold")
    table.add_column("")
    table.add_column("current", justify="right")
    table.add_column("with the draft", justify="right")
    rows: list[tuple[str, Any, Any]] = [
        ("alerts", len(cur["alerts"]), len(sim["alerts"])),
        ("blocks", len(cur["blocks"]), len(sim["blocks"])),
        ("caps reached", len(cur["caps"]), len(sim["caps"])),
        ("cap forecasts", len(cur["forecasts"]), len(sim["forecasts"])),
        ("downgrade periods", len(cur["downgrades"]), len(sim["downgrades"])),
        ("throttle periods", len(cur["throttles"]), len(sim["throttles"])),
        ("fallback texts", cur["gated"]["fallback"], sim["gated"]["fallback"]),
        ("silent skips", cur["gated"]["skip"], sim["gated"]["skip"]),
        ("paused calls", cur["gated"]["paused"], sim["gated"]["paused"]),
        ("events counted", cur["usage"]["events"], sim["usage"]["events"]),
        ("credits counted", _credits(cur), _credits(sim)),
    ]
    for name, a, b in rows:
        style = "bold yellow" if a != b else None
        table.add_row(name, str(a), str(b), style=style)
    out.print(table)
    for title, side in (("with the draft", sim), ("current", cur)):
        lines = [f"  alert {a['at']} policy {a['policy_id']} bot {a['bot_id']} -> "
                 f"{', '.join(a['recipients']) or 'owner'}"
                 for a in side["alerts"][:20]]  # fmt: skip
        lines += [f"  block {b['from']} until {b['until']} policy {b['policy_id']} bots "
                  f"{', '.join(b['bots'])}" for b in side["blocks"][:20]]  # fmt: skip
        lines += [f"  cap {c['period']} {c['category']} reached {c['from']}, resumes {c['until']}"
                  for c in side["caps"][:20]]  # fmt: skip
        lines += [f"  forecast {f['at']} {f['period']} {f['category']} cap in reach -> "
                  f"{', '.join(f['recipients']) or 'owner'}"
                  for f in side["forecasts"][:20]]  # fmt: skip
        if lines:
            out.print(f"[bold]{title}[/]")
            for line in lines:
                out.print(line, highlight=False)


def _credits(side: dict[str, Any]) -> str:
    return f"{sum(side['usage']['credits_micro'].values()) / 1e6:.2f}"


def _day(ms: int, tz: str) -> str:
    from capstream.simulation.timeline import local

    return local(ms, tz)[:16]
