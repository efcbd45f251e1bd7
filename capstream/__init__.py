"""capstream: real-time usage guardrails for bot platforms."""

from capstream import _native

_native.install()  # before anything imports the hot path: stale binaries fall back to source

__version__ = "0.1.0"
