"""Accounts, their hashed API keys and registered bots, in one SQLite file in the data dir."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from capstream.api.keys import NewKey, new_account_key, split_account_key, verify_secret

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
  account_id TEXT PRIMARY KEY,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
  key_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(account_id),
  hashed TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  revoked_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS bots (
  account_id TEXT NOT NULL REFERENCES accounts(account_id),
  bot_id TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (account_id, bot_id)
);
"""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as listed: never the secret."""

    key_id: str
    created_at_ms: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class Bot:
    """A bot registered to an account (policies with scope ``bot`` name one of these)."""

    bot_id: str
    name: str
    created_at_ms: int


class AccountStore:
    """Accounts, keys and bots; thread-safe; every write is one committed transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create_account(self, account_id: str) -> NewKey | None:
        """Create the account with a first key; None if the account exists already."""
        now = _now_ms()
        key = new_account_key()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO accounts VALUES (?, ?)", (account_id, now))
                self._db.execute(
                    "INSERT INTO api_keys VALUES (?, ?, ?, ?, NULL)",
                    (key.key_id, account_id, key.hashed, now),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                return None
        return key

    def delete_account(self, account_id: str) -> None:
        """Remove an account with its keys and bots (undoes a creation that half failed)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("api_keys", "bots", "accounts"):
                self._db.execute(f"DELETE FROM {table} WHERE account_id = ?", (account_id,))
            self._db.execute("COMMIT")

    def exists(self, account_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()
        return row is not None

    def account_ids(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT account_id FROM accounts ORDER BY account_id")
            return [r[0] for r in rows.fetchall()]

    def authenticate(self, key: str) -> str | None:
        """The account a key belongs to, or None if it is unknown or revoked."""
        parts = split_account_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        with self._lock:
            row = self._db.execute(
                "SELECT account_id, hashed FROM api_keys "
                "WHERE key_id = ? AND revoked_at_ms IS NULL",
                (key_id,),
            ).fetchone()
        if row is None or not verify_secret(secret, row[1]):
            return None
        return str(row[0])

    def add_key(self, account_id: str) -> NewKey:
        key = new_account_key()
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, NULL)",
                (key.key_id, account_id, key.hashed, _now_ms()),
            )
        return key

    def keys(self, account_id: str) -> list[KeyInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, created_at_ms, revoked_at_ms FROM api_keys "
                "WHERE account_id = ? ORDER BY created_at_ms, key_id",
                (account_id,),
            ).fetchall()
        return [KeyInfo(r[0], r[1], r[2] is not None) for r in rows]

    def revoke_key(self, account_id: str, key_id: str) -> bool:
        """Revoke one of the account's keys; False if it has no such (live) key."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE api_keys SET revoked_at_ms = ? "
                "WHERE account_id = ? AND key_id = ? AND revoked_at_ms IS NULL",
                (_now_ms(), account_id, key_id),
            )
        return cur.rowcount == 1

    def put_bot(self, account_id: str, bot_id: str, name: str) -> tuple[Bot, bool]:
        """Register or rename a bot; returns it and whether it was new."""
        with self._lock:
            row = self._db.execute(
                "SELECT created_at_ms FROM bots WHERE account_id = ? AND bot_id = ?",
                (account_id, bot_id),
            ).fetchone()
            if row is None:
                created = _now_ms()
                self._db.execute(
                    "INSERT INTO bots VALUES (?, ?, ?, ?)", (account_id, bot_id, name, created)
                )
            else:
                created = row[0]
                self._db.execute(
                    "UPDATE bots SET name = ? WHERE account_id = ? AND bot_id = ?",
                    (name, account_id, bot_id),
                )
        return Bot(bot_id, name, created), row is None

    def bots(self, account_id: str) -> list[Bot]:
        with self._lock:
            rows = self._db.execute(
                "SELECT bot_id, name, created_at_ms FROM bots WHERE account_id = ? ORDER BY bot_id",
                (account_id,),
            ).fetchall()
        return [Bot(*r) for r in rows]

    def has_bot(self, account_id: str, bot_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM bots WHERE account_id = ? AND bot_id = ?", (account_id, bot_id)
            ).fetchone()
        return row is not None

    def delete_bot(self, account_id: str, bot_id: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM bots WHERE account_id = ? AND bot_id = ?", (account_id, bot_id)
            )
        return cur.rowcount == 1


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
