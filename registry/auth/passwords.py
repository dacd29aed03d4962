"""Password hashing (argon2 through passlib) and random secrets."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import cache

from passlib.context import CryptContext

# argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): passlib's default
# of 64 MiB and 4 lanes takes ~0.2 s of both cores per login here, and 64 MiB a login.
_context = CryptContext(
    schemes=["argon2"],
    deprecated="auto",
    argon2__memory_cost=19 * 1024,
    argon2__rounds=2,
    argon2__parallelism=1,
)


@cache
def _dummy_hash() -> str:
    """Checked against when an account does not exist, so that an unknown name costs the
    same time as a wrong password and timing does not reveal which accounts exist. Made
    on first use: an argon2 hash is 40 ms of a worker's start otherwise."""
    return str(_context.hash(secrets.token_urlsafe(16)))


def hash_password(password: str) -> str:
    return str(_context.hash(password))


def verify_password(password: str, stored: str | None) -> bool:
    if stored is None:
        _context.verify(password, _dummy_hash())
        return False
    return bool(_context.verify(password, stored))


def new_secret() -> str:
    """A random secret for robots and generated passwords: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_digest: str | None) -> bool:
    candidate = secret_digest(secret)
    return hmac.compare_digest(candidate, stored_digest or "0" * 64)


def credential_tag(stored: str) -> str:
    """A short fingerprint of a stored hash or digest, carried in refresh tokens so that
    changing the password or secret revokes them."""
    return hashlib.sha256(stored.encode()).hexdigest()[:16]
