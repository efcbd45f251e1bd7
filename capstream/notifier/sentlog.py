"""The notifier's persistent sent-log: one row per (notification, channel), written before
offsets are committed, so a notification is never lost and never sent twice."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
EXPIRED = "expired"
UNCERTAIN = "uncertain"
FINAL = (SENT, FAILED, EXPIRED, UNCERTAIN)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
  notification_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  account_id TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  last_error TEXT NOT NULL DEFAULT '',
  payload BLOB NOT NULL,
  source_partition INTEGER NOT NULL,
  source_offset INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_ms);
CREATE TABLE IF NOT EXISTS attempts (
  notification_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  account_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  at_ms INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  status_code INTEGER,
  error TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (notification_id, channel, attempt)
);
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt: its number, when, the outcome and the HTTP status answered."""

    notification_id: str
    channel: str
    account_id: str
    attempt: int
    at_ms: int
    outcome: str
    status_code: int | None
    error: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification to deliver on one channel (``email`` or ``webhook``)."""

    notification_id: str
    channel: str
    account_id: str
    status: str
    attempts: int
    next_attempt_ms: int
    expires_at_ms: int
    last_error: str
    payload: bytes
    source_partition: int
    source_offset: int


class SentLog:
    """SQLite (WAL, synchronous=FULL): a status change is on disk before the next step.

    Status flow: ``pending`` → ``sending`` → ``sent``; a failed attempt that surely did not
    deliver goes back to ``pending`` with a later ``next_attempt_ms``; ``failed`` (refused for
    good), ``expired`` (out of time) and ``uncertain`` (the process stopped, or the connection
    broke, while sending) are final and never retried.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(
        self,
        notification_id: str,
        account_id: str,
        channels: tuple[str, ...],
        payload: bytes,
        expires_at_ms: int,
        source: tuple[int, int],
        now_ms: int,
        previous_ids: tuple[str, ...] | list[str] = (),
    ) -> bool:
        """Record a notification to deliver; False if its id is known already (a duplicate).

        ``previous_ids``: the ids an earlier release gave the same notification. One of them
        already logged for the same account makes this a duplicate too (an alert sent before
        an upgrade and replayed after it is not sent again); another account's row with that
        id is not the same notification (ids of earlier releases lacked the account)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for old in previous_ids:
                if self._db.execute(
                    "SELECT 1 FROM deliveries WHERE notification_id = ? AND account_id = ? LIMIT 1",
                    (old, account_id),
                ).fetchone():
                    self._db.execute("COMMIT")
                    return False
            added = 0
            for ch in channels:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO deliveries (notification_id, channel, account_id, "
                    "status, next_attempt_ms, expires_at_ms, payload, source_partition, "
                    "source_offset, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (notification_id, ch, account_id, PENDING, now_ms, expires_at_ms, payload,
                     source[0], source[1], now_ms),
                )  # fmt: skip
                added += cur.rowcount
            self._db.execute("COMMIT")
        return added > 0

    def due(self, now_ms: int, limit: int = 100) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT notification_id, channel, account_id, status, attempts, next_attempt_ms, "
                "expires_at_ms, last_error, payload, source_partition, source_offset "
                "FROM deliveries WHERE status = ? AND next_attempt_ms <= ? "
                "ORDER BY next_attempt_ms LIMIT ?",
                (PENDING, now_ms, limit),
            ).fetchall()
        return [Delivery(*r) for r in rows]

    def next_due_ms(self) -> int | None:
        """When the earliest pending delivery is due, or None if nothing is pending."""
        with self._lock:
            row = self._db.execute(
                "SELECT min(next_attempt_ms) FROM deliveries WHERE status = ?", (PENDING,)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _set(self, d: Delivery, status: str, now_ms: int, *, expect: str, **extra: object) -> bool:
        sets = ", ".join(f"{k} = ?" for k in extra)
        sql = (
            f"UPDATE deliveries SET status = ?, updated_ms = ?{', ' + sets if sets else ''} "
            "WHERE notification_id = ? AND channel = ? AND status = ?"
        )
        args = (status, now_ms, *extra.values(), d.notification_id, d.channel, expect)
        with self._lock:
            return self._db.execute(sql, args).rowcount == 1

    def mark_sending(self, d: Delivery, now_ms: int) -> bool:
        """Claim a pending delivery before talking to the server (False if not pending)."""
        return self._set(d, SENDING, now_ms, expect=PENDING, attempts=d.attempts + 1)

    def mark_sent(self, d: Delivery, now_ms: int) -> None:
        self._set(d, SENT, now_ms, expect=SENDING, last_error="")

    def mark_retry(self, d: Delivery, next_attempt_ms: int, error: str, now_ms: int) -> None:
        """The attempt surely did not deliver: try again at ``next_attempt_ms``."""
        self._set(
            d, PENDING, now_ms, expect=SENDING, next_attempt_ms=next_attempt_ms, last_error=error
        )

    def mark_final(self, d: Delivery, status: str, error: str, now_ms: int) -> None:
        """Give up on a delivery being sent: ``failed``, ``expired`` or ``uncertain``."""
        assert status in FINAL
        self._set(d, status, now_ms, expect=SENDING, last_error=error)

    def expire(self, d: Delivery, now_ms: int) -> bool:
        """A pending delivery ran out of time before it could be sent."""
        return self._set(d, EXPIRED, now_ms, expect=PENDING, last_error="expired")

    def recover(self, now_ms: int) -> list[Delivery]:
        """At start: deliveries left ``sending`` by a stopped process become ``uncertain``.

        The message may or may not have reached the server; at most once means it is not
        sent again. They are returned so the caller dead-letters and counts them.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT notification_id, channel, account_id, status, attempts, next_attempt_ms, "
                "expires_at_ms, last_error, payload, source_partition, source_offset "
                "FROM deliveries WHERE status = ?",
                (SENDING,),
            ).fetchall()
            self._db.execute(
                "UPDATE deliveries SET status = ?, updated_ms = ?, "
                "last_error = 'stopped while sending' WHERE status = ?",
                (UNCERTAIN, now_ms, SENDING),
            )
        return [Delivery(*r) for r in rows]

    def log_attempt(self, a: Attempt) -> None:
        """Keep one attempt of a delivery (the delivery log)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO attempts (notification_id, channel, account_id, attempt, "
                "at_ms, outcome, status_code, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (a.notification_id, a.channel, a.account_id, a.attempt, a.at_ms, a.outcome,
                 a.status_code, a.error),
            )  # fmt: skip

    def attempts(self, notification_id: str, channel: str) -> list[Attempt]:
        """The attempts of one delivery, first first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT notification_id, channel, account_id, attempt, at_ms, outcome, "
                "status_code, error FROM attempts WHERE notification_id = ? AND channel = ? "
                "ORDER BY attempt",
                (notification_id, channel),
            ).fetchall()
        return [Attempt(*r) for r in rows]

    def status(self, notification_id: str, channel: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status FROM deliveries WHERE notification_id = ? AND channel = ?",
                (notification_id, channel),
            ).fetchone()
        return None if row is None else str(row[0])

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each status."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, count(*) FROM deliveries GROUP BY status"
            ).fetchall()
        return {str(s): int(n) for s, n in rows}
