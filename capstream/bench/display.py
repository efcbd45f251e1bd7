"""The progress display while the suite runs: one bar per phase, a line when a phase ends."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Phase:
    """The running phase: ``update(done)`` moves its bar; ``note`` is printed when it ends."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task
        self.note = ""

    def update(self, done: int) -> None:
        self._progress.update(self._task, completed=done)


class Display:
    """Rich progress bars on a terminal; plain lines (one per phase) elsewhere."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<34}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TextColumn("[dim]load {task.fields[load]}"),
            console=console,
            transient=False,
        )
        self.started = time.perf_counter()

    def __enter__(self) -> Display:
        self.progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    @contextlib.contextmanager
    def phase(self, name: str, total: int, unit: str = "events") -> Iterator[Phase]:
        """A phase of the run; prints ``name: note`` (or the error) when it ends."""
        task = self.progress.add_task(name, total=total, unit=unit, load=_load())
        phase = Phase(self.progress, task)
        t = time.perf_counter()
        try:
            yield phase
        except BaseException as exc:
            self.progress.update(task, description=f"[red]{name}", load=_load())
            self.console.print(f"[red]✗[/] {name}: {exc}", highlight=False)
            raise
        self.progress.update(task, completed=total, load=_load())
        took = time.perf_counter() - t
        self.console.print(
            f"[green]✓[/] {name} ({took:.0f} s){': ' + phase.note if phase.note else ''}",
            highlight=False,
        )

    def ticker(self, phase: Phase, every: float = 0.2) -> Callable[[int], None]:
        """A progress callback that refreshes at most every ``every`` seconds."""
        last = [0.0]

        def tick(done: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= every:
                last[0] = now
                phase.update(done)

        return tick


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"
