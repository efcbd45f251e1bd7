"""capstream.bench: the benchmark suite (``capstream bench``, ``make bench``)."""

from capstream.bench.options import BenchError, BenchOptions
from capstream.bench.suite import run_bench

__all__ = ["BenchError", "BenchOptions", "run_bench"]
