"""Logins through an OpenID provider: the authorization code flow with PKCE (S256),
`state` and `nonce`, for the console; refresh tokens, to notice a user disabled there.

- The provider is found by discovery (`<issuer>/.well-known/openid-configuration`,
  cached for an hour); its `issuer` must be the one configured, exactly.
- ID tokens are checked with PyJWT against the provider's JWKS: the signature (with an
  algorithm the provider announces, never `none` or a shared-secret one), `iss`, `aud`
  (and `azp` when there are several audiences), `exp`, `iat` and the `nonce` this login
  sent. The JWKS is cached and fetched again when a token names a key it lacks (at most
  once every 30 seconds, so forged `kid`s cannot make us hammer the provider).
- Nothing of a login in progress is kept here: `state` is random and rides in a
  cookie, and the nonce and the PKCE verifier are derived from it with a key every
  replica shares (from the token key), so the callback may land on any replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from registry.config import OidcSettings
from registry.errors import Unavailable

log = logging.getLogger("registry.auth.oidc")

_METADATA_SECONDS = 3600
_JWKS_REFETCH_SECONDS = 30
# Shared-secret and unsigned tokens are never accepted from a provider.
_REFUSED_ALGORITHMS = {"none", "HS256", "HS384", "HS512"}


class LoginFailed(Exception):
    """A login the provider or its answer did not let through; the message says why, in
    words for the person logging in and the operator."""


class ProviderUnavailable(Unavailable):
    """The provider cannot be asked (down, or answering nonsense)."""


@dataclass(frozen=True, slots=True)
class ProviderLogin:
    """Who the provider vouched for, and the refresh token it gave (if any)."""

    issuer: str
    subject: str
    username: str
    groups: frozenset[str]
    refresh_token: str | None

    @property
    def external_id(self) -> str:
        # The identity is the pair; a subject is unique per issuer only.
        return f"{self.issuer}|{self.subject}"


class Provider:
    def __init__(self, settings: OidcSettings, key: bytes) -> None:
        self.settings = settings
        self.issuer = settings.issuer.rstrip("/")
        self._key = key
        self._http = httpx.AsyncClient(timeout=settings.timeout_seconds, follow_redirects=False)
        self._metadata: dict[str, Any] | None = None
        self._metadata_until = 0.0
        self._keys: jwt.PyJWKSet | None = None
        self._keys_at = 0.0

    async def close(self) -> None:
        await self._http.aclose()

    # The flow

    async def start(self, redirect_uri: str) -> tuple[str, str]:
        """Where to send the browser, and the `state` to keep in its cookie."""
        metadata = await self._discovered()
        state = secrets.token_urlsafe(32)
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.settings.scopes,
            "state": state,
            "nonce": self._derived("nonce", state),
            "code_challenge": _challenge(self._derived("pkce", state)),
            "code_challenge_method": "S256",
        }
        return f"{metadata['authorization_endpoint']}?{urlencode(query)}", state

    async def finish(self, code: str, state: str, redirect_uri: str) -> ProviderLogin:
        """Trade the code for tokens and check the ID token; `state` is the one the
        browser's cookie kept (the caller has compared it with the callback's)."""
        answer = await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": self._derived("pkce", state),
            }
        )
        if answer is None:
            raise LoginFailed("the provider refused the login's code (expired or used)")
        return await self._login(answer, self._derived("nonce", state), None)

    async def refresh(self, refresh_token: str) -> ProviderLogin | None:
        """The user as the provider sees them now, from a refresh token; None when the
        provider refuses it (the user was disabled or logged out there)."""
        answer = await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        if answer is None:
            return None
        return await self._login(answer, None, refresh_token)

    # The pieces

    async def _login(
        self, answer: dict[str, Any], nonce: str | None, old_refresh: str | None
    ) -> ProviderLogin:
        id_token = answer.get("id_token")
        if isinstance(id_token, str):
            claims = await self._verified(id_token, nonce)
        elif old_refresh is not None:
            # A refresh need not bring a new ID token (OIDC Core 12.2): the claims come
            # from the userinfo endpoint, asked with the new access token.
            claims = {**await self._userinfo(answer.get("access_token")), "iss": self.issuer}
        else:
            raise LoginFailed("the provider's answer has no ID token; is `openid` in the scopes?")
        username = claims.get(self.settings.username_claim)
        if not isinstance(username, str) or not username:
            raise LoginFailed(
                f"the provider's ID token has no {self.settings.username_claim!r} claim to "
                "name the account; set auth.oidc.username_claim to one it has"
            )
        raw = claims.get(self.settings.groups_claim)
        groups = frozenset(str(g) for g in raw) if isinstance(raw, list) else frozenset()
        refresh = answer.get("refresh_token")
        return ProviderLogin(
            claims["iss"],
            str(claims["sub"]),
            username.lower(),
            groups,
            refresh if isinstance(refresh, str) else old_refresh,
        )

    async def _userinfo(self, access_token: object) -> dict[str, Any]:
        metadata = await self._discovered()
        endpoint = metadata.get("userinfo_endpoint")
        if not isinstance(access_token, str) or not isinstance(endpoint, str):
            raise LoginFailed("the provider's refresh gave no ID token and no way to userinfo")
        try:
            response = await self._http.get(
                endpoint, headers={"Authorization": f"Bearer {access_token}"}
            )
        except httpx.HTTPError as exc:
            raise self._unavailable(f"{type(exc).__name__} from {endpoint}") from exc
        claims = _json(response) if response.status_code == 200 else {}
        if not isinstance(claims.get("sub"), str):
            raise LoginFailed(f"the provider's userinfo answered {response.status_code}")
        return claims

    async def _verified(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        metadata = await self._discovered()
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise LoginFailed(f"the provider's ID token is malformed: {exc}") from None
        algorithm = str(header.get("alg"))
        allowed = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        if algorithm in _REFUSED_ALGORITHMS or algorithm not in allowed:
            raise LoginFailed(f"the provider's ID token is signed with {algorithm!r}, refused")
        key = await self._signing_key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=[algorithm],
                audience=self.settings.client_id,
                issuer=self.issuer,
                leeway=60,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise LoginFailed(f"the provider's ID token does not check out: {exc}") from None
        audience = claims["aud"]
        several = isinstance(audience, list) and len(audience) > 1
        if several and claims.get("azp") != self.settings.client_id:
            raise LoginFailed("the ID token has several audiences and another azp")
        if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise LoginFailed("the ID token's nonce is not this login's: start again")
        return claims

    async def _signing_key(self, kid: object) -> jwt.PyJWK:
        for fetch in (False, True):
            if fetch or self._keys is None:
                if (
                    self._keys is not None
                    and time.monotonic() - self._keys_at < _JWKS_REFETCH_SECONDS
                ):
                    break
                self._keys = jwt.PyJWKSet.from_dict(await self._get_json("jwks_uri"))
                self._keys_at = time.monotonic()
            keys = [k for k in self._keys.keys if k.public_key_use in (None, "sig")]
            if kid is None and len(keys) == 1:
                return keys[0]
            for key in keys:
                if key.key_id == kid:
                    return key
        raise LoginFailed(f"the provider's ID token names a key ({kid!r}) its JWKS lacks")

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any] | None:
        """POST to the token endpoint; None when the provider refuses the grant."""
        metadata = await self._discovered()
        try:
            response = await self._http.post(
                metadata["token_endpoint"],
                data=form,
                auth=(self.settings.client_id, self.settings.client_secret),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise self._unavailable(f"{type(exc).__name__}") from exc
        if response.status_code in (400, 401):
            error = _json(response).get("error", "")
            log.info("OIDC: the provider refused a %s grant: %s", form["grant_type"], error)
            if error == "invalid_client":
                raise self._unavailable(
                    "it refused this registry's client credentials (auth.oidc.client_id and "
                    "client_secret)"
                )
            return None
        if response.status_code != 200:
            raise self._unavailable(f"its token endpoint answered {response.status_code}")
        return _json(response)

    async def _discovered(self) -> dict[str, Any]:
        if self._metadata is not None and time.monotonic() < self._metadata_until:
            return self._metadata
        url = f"{self.issuer}/.well-known/openid-configuration"
        metadata = await self._fetch(url)
        if metadata.get("issuer", "").rstrip("/") != self.issuer:
            raise self._unavailable(
                f"its discovery document names the issuer {metadata.get('issuer')!r}, not "
                f"{self.issuer!r} (auth.oidc.issuer must match it exactly)"
            )
        for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(metadata.get(needed), str):
                raise self._unavailable(f"its discovery document has no {needed}")
        self._metadata, self._metadata_until = metadata, time.monotonic() + _METADATA_SECONDS
        return metadata

    async def _get_json(self, endpoint: str) -> dict[str, Any]:
        return await self._fetch((await self._discovered())[endpoint])

    async def _fetch(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise self._unavailable(f"{type(exc).__name__} from {url}") from exc
        if response.status_code != 200:
            raise self._unavailable(f"{url} answered {response.status_code}")
        return _json(response)

    def _derived(self, purpose: str, state: str) -> str:
        digest = hmac.new(self._key, f"oidc {purpose} {state}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()

    def _unavailable(self, why: str) -> ProviderUnavailable:
        log.error("OIDC provider %s: %s", self.issuer, why)
        return ProviderUnavailable(
            message=f"the identity provider {self.issuer} cannot be used now ({why}); "
            "local admins can still log in with a password"
        )


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
