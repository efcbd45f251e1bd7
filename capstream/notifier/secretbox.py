"""Sealing tenants' channel secrets (webhook signing secrets, Slack URLs) at rest.

The notifier needs them in clear to sign and to post, so they are encrypted, not hashed:
``seal(key, text)`` -> ``"sb1.<base64 nonce|ciphertext|tag>"``, ``open_box(key, box)`` -> text.
Authenticated encryption from the standard library alone (no crypto package is installed):
HMAC-SHA256 as a PRF in counter mode for the keystream (key ``HMAC(key, "enc")``, a random
16-byte nonce per seal) and encrypt-then-MAC with HMAC-SHA256 (key ``HMAC(key, "mac")``)
over the version, nonce and ciphertext, compared in constant time. A box from another key,
or altered, raises :class:`SecretBoxError`; its message never holds the secret.

The key is the deployment's ``CAPSTREAM_CHANNEL_KEY`` (shared by the API and the notifier),
else a random key created once in ``<data dir>/channel.key`` (mode 0600): set the variable
when the API and the notifier do not share a data directory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from capstream.errors import CapstreamError
from capstream.streams.settings import Settings

_PREFIX = "sb1."
_NONCE = 16
_TAG = 32


class SecretBoxError(CapstreamError):
    """A sealed secret cannot be opened (another key, or altered)."""


def _subkey(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


def _stream(key: bytes, nonce: bytes, n: int) -> bytes:
    enc = _subkey(key, b"enc")
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hmac.new(enc, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        counter += 1
    return bytes(out[:n])


def seal(key: bytes, text: str) -> str:
    """Encrypt and authenticate ``text`` under ``key``."""
    nonce = secrets.token_bytes(_NONCE)
    plain = text.encode()
    cipher = bytes(a ^ b for a, b in zip(plain, _stream(key, nonce, len(plain)), strict=True))
    tag = hmac.new(_subkey(key, b"mac"), b"sb1" + nonce + cipher, hashlib.sha256).digest()
    return _PREFIX + base64.urlsafe_b64encode(nonce + cipher + tag).decode()


def open_box(key: bytes, box: str) -> str:
    """The text sealed in ``box`` (raises :class:`SecretBoxError`)."""
    if not box.startswith(_PREFIX):
        raise SecretBoxError("not a sealed secret (sb1)")
    try:
        raw = base64.urlsafe_b64decode(box[len(_PREFIX) :].encode())
    except ValueError as exc:
        raise SecretBoxError("a sealed secret is not valid base64") from exc
    if len(raw) < _NONCE + _TAG:
        raise SecretBoxError("a sealed secret is too short")
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    expected = hmac.new(_subkey(key, b"mac"), b"sb1" + nonce + cipher, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        raise SecretBoxError("a sealed secret does not open with this key (or was altered)")
    return bytes(
        a ^ b for a, b in zip(cipher, _stream(key, nonce, len(cipher)), strict=True)
    ).decode()


def hint(secret: str) -> str:
    """What people may see of a secret: its last 4 characters."""
    return "…" + secret[-4:] if len(secret) >= 12 else "…"


def channel_key(settings: Settings) -> bytes:
    """The deployment's key for channel secrets (see the module docstring)."""
    if settings.channel_key is not None:
        return hashlib.sha256(settings.channel_key.get_secret_value().encode()).digest()
    path = Path(settings.data_dir) / "channel.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
        finally:
            os.close(fd)
    return hashlib.sha256(path.read_bytes().strip()).digest()
