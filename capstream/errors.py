"""The one error base of capstream and the errors every package shares."""


class CapstreamError(Exception):
    """Base of every error capstream raises on purpose; the message says what to do."""


class ConfigError(CapstreamError):
    """A setting is missing or wrong."""


class DecodeError(CapstreamError):
    """Bytes from a topic could not be decoded into the expected record.

    ``reason`` is a short machine-friendly label (for DLQ records and counters).
    """

    def __init__(self, message: str, *, reason: str = "undecodable") -> None:
        super().__init__(message)
        self.reason = reason


class KafkaSetupError(CapstreamError):
    """The local broker could not be fetched, formatted, started or reached."""
