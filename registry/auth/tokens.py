"""Signed bearer tokens (JWT, ES256 or RS256) in the shape of the Docker token spec.

An access token carries iss, sub, aud (the service), exp, nbf, iat, jti and `access`: the
scopes granted. A refresh token (OAuth2 `refresh_token`, Docker's identity token) carries no
access; it names the account and a fingerprint of its credential, so a new password or
secret revokes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.auth.keyfiles import read_or_create
from registry.auth.scopes import Scope
from registry.config import ConfigError, Settings

# Verified access tokens, so a client reusing its token costs a dict lookup, not a
# signature check. Cleared whole when full: simple, and refilled at the clients' pace.
_CACHE_SIZE = 10_000
_TIME_CLAIMS = ("exp", "nbf", "iat")


class TokenInvalid(Exception):
    """A token that is malformed, expired, not ours or not meant for this service."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    subject: str
    access: tuple[Scope, ...]
    expires_at: float
    # The token's id, which audit events name.
    jti: str = ""
    # The personal access token it was issued for, if any.
    token_id: int | None = None

    def allows(self, scope: Scope) -> bool:
        for granted in self.access:
            if granted.type == scope.type and granted.name == scope.name:
                return "*" in granted.actions or scope.actions <= granted.actions
        return False


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    issued_at: int
    expires_in: int
    jti: str = ""


def load_or_create_key(path: Path, algorithm: str) -> bytes:
    """Read the PEM private key at `path`, or create it there (mode 0600) if absent."""

    def make() -> bytes:
        if algorithm == "RS256":
            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        pem: bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem

    return read_or_create(path, make)


def authority_from_settings(settings: Settings) -> TokenAuthority:
    """The token authority the settings describe, its key read or made on first start.
    A key that cannot be used raises ConfigError naming the file and the fault."""
    path = settings.token_key_path
    auth = settings.auth
    try:
        pem = load_or_create_key(path, auth.key_algorithm)
        return TokenAuthority(
            pem,
            issuer=auth.issuer,
            service=auth.service,
            ttl_seconds=auth.token_ttl_seconds,
            refresh_ttl_seconds=auth.refresh_ttl_seconds,
            leeway_seconds=auth.clock_skew_seconds,
        )
    except OSError as exc:
        raise ConfigError(
            f"config: auth.key_file: cannot read or create {path} ({exc.strerror})"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"config: auth.key_file: {path} is not an unencrypted PEM private key "
            f"(EC P-256 or RSA): {str(exc).splitlines()[0][:200]}"
        ) from exc


class TokenAuthority:
    def __init__(
        self,
        private_pem: bytes,
        *,
        issuer: str,
        service: str,
        ttl_seconds: int,
        refresh_ttl_seconds: int,
        leeway_seconds: int,
    ) -> None:
        key = serialization.load_pem_private_key(private_pem, password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            self.algorithm = "ES256"
        elif isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = "RS256"
        else:
            raise ValueError("the token key must be an EC P-256 or an RSA private key")
        self._private = key
        self._public = key.public_key()
        self.key_id = _thumbprint(self._public)
        self._secret = hashlib.sha256(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ).digest()
        self.issuer = issuer
        self.service = service
        self.ttl = ttl_seconds
        self.refresh_ttl = refresh_ttl_seconds
        self.leeway = leeway_seconds
        self._verified: dict[str, AccessToken] = {}

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for `purpose`, the same in every replica (they share the token
        key) and useless to anyone without it."""
        return hmac.new(self._secret, purpose.encode(), hashlib.sha256).digest()

    def issue(self, subject: str, access: list[Scope], token_id: int | None = None) -> Issued:
        now = int(time.time())
        claims = {
            **self._base_claims(subject, now, self.ttl),
            "access": [scope.claim() for scope in access],
        }
        if token_id is not None:
            claims["pat"] = token_id
        return Issued(self._sign(claims), now, self.ttl, claims["jti"])

    def issue_refresh(self, subject: str, credential: str, token_id: int | None = None) -> str:
        now = int(time.time())
        claims = {
            **self._base_claims(subject, now, self.refresh_ttl),
            "token_use": "refresh",
            "cred": credential,
        }
        if token_id is not None:
            claims["pat"] = token_id
        return self._sign(claims)

    def verify(self, token: str) -> AccessToken:
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at + self.leeway < time.time():
                raise TokenInvalid("token has expired")
            return cached
        claims = self._decode(token)
        if "token_use" in claims or not isinstance(claims.get("access"), list):
            raise TokenInvalid("not an access token")
        verified = AccessToken(
            claims["sub"],
            _access(claims["access"]),
            float(claims["exp"]),
            str(claims["jti"]),
            _token_id(claims),
        )
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = verified
        return verified

    def verify_refresh(self, token: str) -> tuple[str, str, int | None]:
        """The account, credential fingerprint and personal access token (if any) a
        refresh token was issued for."""
        claims = self._decode(token)
        if claims.get("token_use") != "refresh" or not isinstance(claims.get("cred"), str):
            raise TokenInvalid("not a refresh token")
        return claims["sub"], claims["cred"], _token_id(claims)

    def _base_claims(self, subject: str, now: int, ttl: int) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
        }

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._private, self.algorithm, headers={"kid": self.key_id})

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,
                algorithms=[self.algorithm],
                audience=self.service,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid(str(exc)) from exc
        if not isinstance(claims["sub"], str):
            raise TokenInvalid("sub must be a string")
        for claim in _TIME_CLAIMS:
            value = claims[claim]
            # PyJWT takes anything int() takes, "1e10" and true included; RFC 7519 says
            # a NumericDate is a JSON number.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TokenInvalid(f"{claim} must be a number")
            if not math.isfinite(value):
                raise TokenInvalid(f"{claim} must be a finite number")
        return claims


def _token_id(claims: dict[str, Any]) -> int | None:
    value = claims.get("pat")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenInvalid("pat must be an integer")
    return value


def _access(raw: list[Any]) -> tuple[Scope, ...]:
    scopes = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise TokenInvalid("malformed access claim")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not (isinstance(kind, str) and isinstance(name, str) and isinstance(actions, list)):
            raise TokenInvalid("malformed access claim")
        scopes.append(Scope(kind, name, frozenset(str(a) for a in actions)))
    return tuple(scopes)


def _thumbprint(public: Any) -> str:
    """The RFC 7638 JWK thumbprint of the public key, used as the token's `kid`."""
    numbers = public.public_numbers()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x, 32), "y": _b64(numbers.y, 32)}
    else:
        jwk = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _b64(value: int, length: int = 0) -> str:
    raw = value.to_bytes(length or (value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
