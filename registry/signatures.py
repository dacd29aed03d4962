"""Cosign signatures, checked against public keys: what a signature manifest holds, and
whether a key made it over this image in this repository.

A cosign signature (and containers/image's sigstore signature, the same format) is an
OCI manifest whose layers are `application/vnd.dev.cosign.simplesigning.v1+json`
payloads, each with its signature in the `dev.cosignproject.cosign/signature`
annotation (base64). It is found by the tag `sha256-<hex>.sig` of the image it signs, or
by the referrers API (its `subject`). The payload is JSON:

    {"critical": {"identity": {"docker-reference": "registry.example/ns/app:v1"},
                  "image": {"docker-manifest-digest": "sha256:..."},
                  "type": "cosign container image signature"},
     "optional": {...}}

A layer is good for a key when the key's signature over the payload's bytes verifies
(ECDSA with SHA-256 in ASN.1 form as cosign makes, RSA PKCS#1 v1.5 or PSS with SHA-256,
Ed25519), its type is cosign's, it names the image's digest, and its reference names the
repository (any registry host, any tag: what matchRepository means in a podman policy).
Pure functions: the caller fetches the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from registry.digest import Digest

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_TYPE = "cosign container image signature"
SIGNATURE_TAG = re.compile(r"sha256-([0-9a-f]{64})\.sig")
# cosign's artifact type of a signature in the referrers form (cosign 2, OCI 1.1 mode).
COSIGN_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
# A payload is a few hundred bytes; more is not a signature's.
MAX_PAYLOAD = 64 * 1024
_MAX_KEY = 16 * 1024

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class KeyInvalid(ValueError):
    """Not a public key this registry can check signatures with; says why."""


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key, as loaded: its algorithm in words, and the SHA-256 of its SPKI DER
    (what tells two keys apart whatever their PEM's line breaks)."""

    key: PublicKey
    algorithm: str
    fingerprint: str
    pem: str


def load_key(pem: str) -> TrustedKey:
    """A public key in PEM (`PUBLIC KEY`, as `cosign generate-key-pair` writes)."""
    if len(pem) > _MAX_KEY:
        raise KeyInvalid(f"a public key in PEM is at most {_MAX_KEY} characters")
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError) as exc:
        raise KeyInvalid(f"not a PEM public key ({str(exc)[:120]})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise KeyInvalid(f"ECDSA on {key.curve.name}: expected P-256, P-384 or P-521")
        algorithm = f"ecdsa-{key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise KeyInvalid(f"RSA of {key.key_size} bits: at least 2048")
        algorithm = f"rsa-{key.key_size}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    else:
        raise KeyInvalid(f"a {type(key).__name__}: expected ECDSA, RSA or Ed25519")
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    normal = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return TrustedKey(key, algorithm, "sha256:" + hashlib.sha256(der).hexdigest(), normal)


@dataclass(frozen=True, slots=True)
class SignedLayer:
    """A payload and its signature, as a signature manifest lists them."""

    payload_digest: str
    signature: bytes


def signature_tag(digest: str) -> str:
    """cosign's tag of the signatures of `digest`: sha256-<hex>.sig."""
    return digest.replace(":", "-", 1) + ".sig"


def signed_layers(manifest: bytes) -> list[SignedLayer]:
    """The simple-signing layers of a signature manifest (none if it is no such thing)."""
    try:
        doc = json.loads(manifest)
    except ValueError:
        return []
    found = []
    for layer in doc.get("layers") or [] if isinstance(doc, dict) else []:
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING:
            continue
        digest = layer.get("digest")
        encoded = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if not isinstance(digest, str) or not isinstance(encoded, str):
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        found.append(SignedLayer(digest, signature))
    return found


def verifies(key: PublicKey, signature: bytes, payload: bytes) -> bool:
    """Whether `signature` is `key`'s over `payload`."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            try:
                key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)
                key.verify(signature, payload, pss, hashes.SHA256())
        else:
            key.verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def payload_names(payload: bytes, digest: str, repository: str) -> str | None:
    """None when a payload is cosign's and names this image in this repository; else
    why not, in words."""
    if len(payload) > MAX_PAYLOAD:
        return "the payload is too large to be a signature's"
    try:
        critical = json.loads(payload)["critical"]
        kind = critical["type"]
        signed = critical["image"]["docker-manifest-digest"]
        reference = critical["identity"]["docker-reference"]
    except (ValueError, KeyError, TypeError):
        return "the payload is not a cosign signature's"
    if kind != COSIGN_TYPE:
        return f"the payload's type is {str(kind)[:80]!r}"
    if signed != digest:
        return f"the payload signs {str(signed)[:80]}, not {digest}"
    if not isinstance(reference, str) or _repository_of(reference) != repository:
        return f"the payload names {str(reference)[:200]!r}, not repository {repository}"
    return None


def _repository_of(reference: str) -> str:
    """The repository of `host[:port]/path[:tag][@digest]`, without its host: what a
    signature names, whichever name the signer reached this registry by."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return name


async def signers(
    digest: str,
    repository: str,
    keys: Sequence[TrustedKey | None],
    signatures: Iterable[bytes],
    payload: Callable[[str], Awaitable[bytes | None]],
    *,
    first: bool = False,
    not_counted: Callable[[str], None] = lambda why: None,
) -> set[int]:
    """The positions in `keys` of those that signed `digest` in `repository` by one of
    these signature manifests, whose payloads `payload` reads (None: not a payload);
    with `first`, at most the first found. `not_counted` hears why a payload is not."""
    found: set[int] = set()
    for signature in signatures:
        for layer in signed_layers(signature):
            read = await payload(layer.payload_digest)
            if read is None:
                continue
            why = payload_names(read, digest, repository)
            if why is not None:
                not_counted(why)
                continue
            for n, key in enumerate(keys):
                if key is not None and n not in found and verifies(key.key, layer.signature, read):
                    found.add(n)
                    if first:
                        return found
    return found


def checked_payload(data: bytes, digest: str) -> bytes | None:
    """`data` if it is what `digest` names and no larger than a payload can be."""
    try:
        parsed = Digest.parse(digest)
    except ValueError:
        return None
    if len(data) > MAX_PAYLOAD or Digest.of(data, parsed.algorithm) != parsed:
        return None
    return data


async def read_payload(chunks: AsyncIterable[bytes], digest: str) -> bytes | None:
    """A payload read from elsewhere (a remote, an upstream), no further than a payload
    can be long; None if it is not what `digest` names."""
    data = b""
    async for chunk in chunks:
        data += chunk
        if len(data) > MAX_PAYLOAD:
            return None
    return checked_payload(data, digest)
