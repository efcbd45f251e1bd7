"""capstream: real-time usage guardrails for bot platforms."""

__version__ = "0.1.0"
