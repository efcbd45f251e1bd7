"""API keys: generation, salted hashing, verification, and the admin key's first-start setup.

Keys are 256-bit random tokens, so one salted SHA-256 is enough (a slow KDF protects guessable
passwords, not random keys). Only ``sha256$<salt>$<digest>`` strings are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from capstream.errors import ConfigError

ACCOUNT_PREFIX = "csk"
ADMIN_PREFIX = "csa"
_SCHEME = "sha256"


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``sha256$<salt hex>$<digest hex>`` of ``secret`` with a fresh 16-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha256(salt + secret.encode()).hexdigest()
    return f"{_SCHEME}${salt.hex()}${digest}"


def verify_secret(secret: str, stored: str) -> bool:
    """True if ``secret`` hashes to ``stored`` (constant-time comparison)."""
    try:
        scheme, salt_hex, digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != _SCHEME:
        return False
    candidate = hashlib.sha256(salt + secret.encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly minted account key: the plaintext (shown once) and what is stored."""

    key_id: str
    plaintext: str
    hashed: str


def new_account_key() -> NewKey:
    """A new account key ``csk_<key_id>_<secret>``; ``key_id`` is public, for lookups."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, f"{ACCOUNT_PREFIX}_{key_id}_{secret}", hash_secret(secret))


def split_account_key(key: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of an account key, or None if it does not look like one."""
    prefix, sep, rest = key.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != ACCOUNT_PREFIX or not sep or not sep2 or not key_id or not secret:
        return None
    return key_id, secret


@dataclass(frozen=True, slots=True)
class AdminKey:
    """How the admin key is checked; ``shown_once`` is the plaintext of a just-generated key."""

    hashed: str
    shown_once: str | None = None

    def matches(self, key: str) -> bool:
        return key.startswith(ADMIN_PREFIX + "_") and verify_secret(key, self.hashed)


def admin_key_file(data_dir: Path) -> Path:
    """Where the generated admin key's hash lives."""
    return data_dir / "api" / "admin_key.sha256"


def load_admin_key(configured: str | None, data_dir: Path) -> AdminKey:
    """The admin key: the configured one, or the stored hash, or a new key generated now.

    A generated key is written hashed to ``<data dir>/api/admin_key.sha256`` (mode 0600) and
    returned in ``shown_once`` so the entry point prints it exactly once.
    """
    if configured:
        if not configured.startswith(ADMIN_PREFIX + "_") or len(configured) < 24:
            raise ConfigError(
                f"CAPSTREAM_API_ADMIN_KEY must start with '{ADMIN_PREFIX}_' and be at least 24 "
                "characters; or unset it to have one generated"
            )
        return AdminKey(hash_secret(configured))
    path = admin_key_file(data_dir)
    if path.exists():
        stored = path.read_text().strip()
        if stored.count("$") != 2:
            raise ConfigError(f"{path} is not an admin key hash; delete it to generate a new key")
        return AdminKey(stored)
    plaintext = f"{ADMIN_PREFIX}_{secrets.token_urlsafe(32)}"
    hashed = hash_secret(plaintext)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(hashed + "\n")
    return AdminKey(hashed, shown_once=plaintext)
