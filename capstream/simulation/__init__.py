"""Policy simulation on history: try a draft policy or cap behaviour on an account's past
events before switching it on (issue 15). See README.md and docs/simulation.md."""

from capstream.simulation.draft import (
    Config,
    Draft,
    SimulationBody,
    SimulationError,
    check_draft,
    check_range,
    configs,
    parse_body,
)
from capstream.simulation.run import simulate
from capstream.simulation.source import EventSource, reads_attributes

__all__ = [
    "Config",
    "Draft",
    "EventSource",
    "SimulationBody",
    "SimulationError",
    "check_draft",
    "check_range",
    "configs",
    "parse_body",
    "reads_attributes",
    "simulate",
]
