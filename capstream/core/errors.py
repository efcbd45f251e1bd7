"""Errors the decision core raises; each message says what the caller should change."""

from capstream.errors import CapstreamError


class CoreError(CapstreamError):
    """Base of the errors raised by ``capstream.core``."""


class PolicyError(CoreError, ValueError):
    """A usage policy is invalid (bad window, threshold, scope or missing action)."""


class SettingsError(CoreError, ValueError):
    """Tenant settings are invalid (unknown timezone or language, plan mismatch, bad cap)."""


class EventError(CoreError, ValueError):
    """A usage event cannot be applied (wrong account, unknown category, negative amount)."""


class StateFormatError(CoreError, ValueError):
    """Serialised usage state is truncated, corrupt or of an unknown format version."""


class PlanError(CoreError):
    """The tenant's plan does not offer the requested feature."""
