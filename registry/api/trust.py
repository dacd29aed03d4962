"""/api/v1/trust/keys: the public keys whose signatures a namespace's signature policy
trusts. Admins keep the registry's (trusted in every namespace); a namespace's owners
keep its own. A key added is checked against the signatures already stored, in the
background (`scanned` tells when that is done); a key removed stops counting at once."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from pydantic import Field
from starlette.requests import Request

from registry.api.accounts import registry_and_namespace
from registry.api.declare import Answer, Body, Operations, Page, PageQuery
from registry.requests import registry_of
from registry.services.trust import KeyInfo

OPERATIONS = Operations(tag="trust")
_both = partial(registry_and_namespace, OPERATIONS, "trust")


class NewKey(Body):
    name: str = Field(description="unique among the namespace's (or the registry's) keys")
    pem: str = Field(
        description="a public key in PEM (cosign.pub): ECDSA P-256/384/521, RSA, Ed25519"
    )


class Key(Answer):
    namespace: str = Field(description="empty: the registry's, trusted in every namespace")
    name: str
    algorithm: str
    fingerprint: str = Field(description="sha256 of the key's SubjectPublicKeyInfo")
    pem: str
    created_at: datetime
    created_by: str
    scanned: bool = Field(description="the signatures stored before it was added are checked")


def _key(info: KeyInfo) -> Key:
    return Key(**{k: getattr(info, k) for k in Key.model_fields})


@_both("GET", "/keys", summary="List trusted keys", response=Key, query=PageQuery, paged="keys")
async def list_keys(request: Request, namespace: str, caller: Any, query: PageQuery) -> Page[Key]:
    listed = [_key(k) for k in await registry_of(request).trust.keys(namespace)]
    return Page.of(listed, lambda k: k.name, query)


@_both(
    "POST", "/keys", summary="Trust a public key", response=Key, status=201, body=NewKey,
    errors=(409,),
)  # fmt: skip
async def add_key(request: Request, namespace: str, caller: Any, body: NewKey) -> Key:
    """400 says why a key cannot vouch (not PEM, RSA under 2048 bits, another curve)."""
    return _key(await registry_of(request).trust.add_key(namespace, body.name, body.pem))


@_both("DELETE", "/keys/{key}", summary="Stop trusting a key")
async def remove_key(request: Request, namespace: str, caller: Any, key: str) -> None:
    """What only this key signed counts as unsigned from now on."""
    await registry_of(request).trust.remove_key(namespace, key)
