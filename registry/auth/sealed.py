"""Secrets kept in the database sealed (AES-256-GCM): a replication remote's password, an
identity provider's refresh tokens. The key is a file beside the token key
(`sealing_key_file`, by default `<data_dir>/sealing.key`, made on the first start),
which every replica has and the database does not: a copy of the database alone gives
none of them away."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from registry.auth.keyfiles import read_or_create
from registry.config import ConfigError

_VERSION = "v1."


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, secret.encode(), _VERSION.encode())
        return _VERSION + base64.urlsafe_b64encode(sealed).decode()

    def open(self, sealed: str) -> str | None:
        """The secret, or None if it was sealed with another key (a new token key) or
        is damaged."""
        if not sealed.startswith(_VERSION):
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_VERSION) :])
            return self._aead.decrypt(raw[:12], raw[12:], _VERSION.encode()).decode()
        except (InvalidTag, ValueError):
            return None


def sealer_from_file(path: Path) -> Sealer:
    """The sealer of the key at `path` (base64 of 32 bytes), made there if absent."""
    try:
        text = read_or_create(path, lambda: base64.b64encode(os.urandom(32)) + b"\n")
    except OSError as exc:
        raise ConfigError(
            f"config: sealing_key_file: cannot read or create {path} ({exc.strerror})"
        ) from exc
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise ConfigError(
            f"config: sealing_key_file: {path} does not hold a key (base64 of 32 bytes); "
            "remove it to have a new one made, and enter remotes' passwords again"
        )
    return Sealer(key)
