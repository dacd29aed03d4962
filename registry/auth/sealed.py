"""Secrets kept in the database sealed (AES-256-GCM) with a key derived from the token
key, which every replica has and the database does not: a copy of the database alone
does not give away an identity provider's refresh tokens."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
