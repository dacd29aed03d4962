"""Cosign signatures checked against keys (registry/signatures.py), with signatures made
here the way cosign makes them; tests/e2e/ checks what cosign and skopeo themselves
make. A signature counts for a key only over the exact payload bytes, naming this image
in this repository."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from registry import signatures
from registry.signatures import KeyInvalid, load_key, payload_names, signed_layers, verifies

DIGEST = "sha256:" + "ab" * 32
Signer = Callable[[bytes], bytes]


def _ecdsa() -> tuple[str, Signer]:
    key = ec.generate_private_key(ec.SECP256R1())
    return _pem(key.public_key()), lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))


def _rsa() -> tuple[str, Signer]:
    key = rsa.generate_private_key(65537, 2048)
    return _pem(key.public_key()), lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _rsa_pss() -> tuple[str, Signer]:
    key = rsa.generate_private_key(65537, 2048)
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH)
    return _pem(key.public_key()), lambda data: key.sign(data, pss, hashes.SHA256())


def _ed25519() -> tuple[str, Signer]:
    key = ed25519.Ed25519PrivateKey.generate()
    return _pem(key.public_key()), key.sign


def _pem(key: object) -> str:
    encoded: bytes = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return encoded.decode()


def payload(digest: str = DIGEST, reference: str = "127.0.0.1:5000/team/app:v1") -> bytes:
    critical = {
        "identity": {"docker-reference": reference},
        "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature",
    }
    return json.dumps({"critical": critical, "optional": None}).encode()


@pytest.mark.parametrize("make", [_ecdsa, _rsa, _rsa_pss, _ed25519])
def test_a_key_verifies_its_own_signature_over_the_exact_payload_only(
    make: Callable[[], tuple[str, Signer]],
) -> None:
    pem, sign = make()
    key = load_key(pem)
    data = payload()
    signature = sign(data)
    assert verifies(key.key, signature, data)
    assert not verifies(key.key, signature, data.replace(b"v1", b"v2"))  # tampered payload
    assert not verifies(key.key, signature[:-1] + bytes([signature[-1] ^ 1]), data)
    other, _ = make()
    assert not verifies(load_key(other).key, signature, data)  # another key
    # The same key in other PEM line breaks is the same key.
    assert load_key(pem.replace("\n", "\r\n")).fingerprint == key.fingerprint


def test_keys_that_cannot_vouch_are_refused_with_the_reason() -> None:
    weak = rsa.generate_private_key(65537, 1024).public_key()
    with pytest.raises(KeyInvalid, match="RSA of 1024 bits: at least 2048"):
        load_key(_pem(weak))
    with pytest.raises(KeyInvalid, match="not a PEM public key"):
        load_key("-----BEGIN PUBLIC KEY-----\nbm9wZQ==\n-----END PUBLIC KEY-----\n")
    secp256k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    with pytest.raises(KeyInvalid, match="expected P-256"):
        load_key(_pem(secp256k1))
    with pytest.raises(KeyInvalid, match="at most"):
        load_key("x" * 20_000)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (payload(), None),
        (payload(reference="team/app"), None),
        (payload(reference="registry.example.org/team/app@" + DIGEST), None),
        (payload(reference="localhost/team/app:v9"), None),
        (payload(digest="sha256:" + "cd" * 32), "the payload signs sha256:cdcd"),
        (payload(reference="127.0.0.1:5000/team/other:v1"), "not repository team/app"),
        (payload(reference="127.0.0.1:5000/evil/team/app:v1"), "not repository team/app"),
        (b'{"critical": {}}', "not a cosign signature's"),
        (b"not json", "not a cosign signature's"),
        (payload().replace(b"cosign container image", b"something"), "type is 'something"),
    ],
)
def test_a_payload_must_name_this_image_in_this_repository(data: bytes, why: str | None) -> None:
    found = payload_names(data, DIGEST, "team/app")
    assert found is None if why is None else (found is not None and why in found), found


def test_signature_layers_are_read_from_a_cosign_manifest_and_nothing_else() -> None:
    signature = base64.b64encode(b"\x30\x44signature").decode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": [
            {
                "mediaType": signatures.SIMPLE_SIGNING,
                "digest": DIGEST,
                "size": 300,
                "annotations": {signatures.SIGNATURE_ANNOTATION: signature},
            },
            {"mediaType": signatures.SIMPLE_SIGNING, "digest": DIGEST, "size": 1},  # unsigned
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": DIGEST},
            {
                "mediaType": signatures.SIMPLE_SIGNING,
                "digest": DIGEST,
                "annotations": {signatures.SIGNATURE_ANNOTATION: "not base64!"},
            },
        ],
    }
    (layer,) = signed_layers(json.dumps(manifest).encode())
    assert layer.payload_digest == DIGEST and layer.signature == b"\x30\x44signature"
    assert signed_layers(b"[]") == [] and signed_layers(b"{") == []
