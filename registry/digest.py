"""Content digests: parsing against the OCI grammar, and streaming hashers."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from registry.errors import DigestInvalid

# algorithm ":" encoded, as in the OCI image spec's descriptor grammar.
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_ENCODED = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}
DEFAULT_ALGORITHM = "sha256"
ALGORITHMS = frozenset(_ENCODED)


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse a digest, raising DigestInvalid for anything outside the grammar or an
        algorithm this registry does not verify (so it can never reach a storage path)."""
        if not _GRAMMAR.fullmatch(text):
            raise DigestInvalid({"digest": text[:200]}, message=f"invalid digest {text[:200]!r}")
        algorithm, encoded = text.split(":", 1)
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            raise DigestInvalid(
                {"digest": text[:200]},
                message=f"unsupported digest algorithm {algorithm[:50]!r}: use sha256 or sha512",
            )
        if not pattern.fullmatch(encoded):
            raise DigestInvalid(
                {"digest": text[:200]}, message=f"malformed {algorithm} digest {text[:200]!r}"
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def is_digest(reference: str) -> bool:
    """A manifest reference is a digest when it has a colon (tags cannot)."""
    return ":" in reference
