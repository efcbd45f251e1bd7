"""The notifier: delivers notifications by email and signed webhook, each id at most once."""

from capstream.notifier.dispatcher import Dispatcher, NotifierStats
from capstream.notifier.sentlog import SentLog
from capstream.notifier.service import Notifier

__all__ = ["Dispatcher", "Notifier", "NotifierStats", "SentLog"]
