"""What one suite run does: the quick and full presets, and the errors of the suite."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from capstream.errors import CapstreamError

Figures = dict[str, Any]
"""A JSON-ready mapping of measured figures."""


class BenchError(CapstreamError):
    """The benchmark suite cannot run as asked."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """Sizes and time limits of one run (every phase stops at its limit, so runs are bounded).

    ``full()`` fits ``make bench`` in under 15 minutes on a 2-core machine and ``quick()`` in
    under 3; each phase reports whether it finished the backlog or stopped at its limit.
    """

    mode: str = "full"
    seed: int = 7
    events: int = 400_000
    accounts: int = 1_000
    bots: int = 10
    partitions: int = 4
    worker_max_s: float = 120.0
    peer_max_s: float = 60.0
    ceiling_min_s: float = 3.0
    """The consume ceilings read the topic in whole passes for at least this long..."""
    ceiling_max_s: float = 20.0
    """...and at most this long."""
    produce_test_s: float = 4.0
    rates: tuple[int, ...] = (1_000, 5_000, 20_000)
    rate_seconds: float = 40.0
    """How long each offered rate runs..."""
    probes: int = 1_000
    """...and how many probes it starts, evenly spread (1,000 per rate: a p99 of 1,000 probes
    is the 990th, so ten slow ones show; ``--quick``'s 20 say nothing about the tail)."""
    peers: tuple[str, ...] = ("faust", "quix")
    components: bool = True
    profile: bool = False
    out_dir: Path = field(default_factory=lambda: Path("bench-results"))

    @classmethod
    def full(cls, **changes: Any) -> BenchOptions:
        return replace(cls(), **changes)

    @classmethod
    def quick(cls, **changes: Any) -> BenchOptions:
        preset = cls(
            mode="quick",
            events=60_000,
            worker_max_s=30.0,
            peer_max_s=10.0,
            ceiling_min_s=1.0,
            ceiling_max_s=8.0,
            produce_test_s=2.0,
            rate_seconds=4.0,
            probes=20,
            components=False,
        )
        return replace(preset, **changes)

    @property
    def probes_per_s(self) -> float:
        """Probes started per second of a rate's phase."""
        return self.probes / self.rate_seconds

    def __post_init__(self) -> None:
        problems = []
        if self.events < 1_000:
            problems.append("events must be at least 1,000")
        if self.accounts < 10 or self.bots < 1:
            problems.append("accounts must be at least 10 and bots at least 1")
        if not 1 <= self.partitions <= 64:
            problems.append("partitions must be between 1 and 64")
        if min(self.worker_max_s, self.peer_max_s, self.ceiling_max_s, self.rate_seconds) <= 0:
            problems.append("time limits must be positive")
        if self.probes < 1:
            problems.append("each rate needs at least 1 probe")
        if any(r < 1 for r in self.rates):
            problems.append("rates must be positive events per second")
        unknown = set(self.peers) - {"faust", "quix"}
        if unknown:
            problems.append(f"unknown peers {sorted(unknown)}: choose from faust, quix")
        if problems:
            raise BenchError("invalid benchmark options: " + "; ".join(problems))


def from_cli(
    quick: bool,
    events: int | None,
    seed: int,
    peers: str,
    components: bool | None,
    profile: bool,
    out_dir: str,
) -> BenchOptions:
    """Options from ``capstream bench``'s flags (the preset, then what was given)."""
    changes: dict[str, Any] = {"seed": seed, "profile": profile, "out_dir": Path(out_dir)}
    if events is not None:
        changes["events"] = events
    if components is not None:
        changes["components"] = components
    names = tuple(p.strip() for p in peers.split(",") if p.strip())
    changes["peers"] = () if names == ("none",) else names
    return BenchOptions.quick(**changes) if quick else BenchOptions.full(**changes)
