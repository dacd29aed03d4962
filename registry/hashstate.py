"""SHA-256 and SHA-512 whose running state can be saved and taken up again elsewhere.

A chunked upload's chunks may land on any worker or replica. To verify the digest at the
closing PUT without reading the whole upload again, the hash of the bytes so far is saved
with the session (services/uploads.py) and continued by whichever process gets the next
chunk. CPython's hashlib cannot export a hash's state, so this uses OpenSSL's low-level
SHA256_* and SHA512_* functions from the libcrypto that Python's own hashlib loads (the
same assembly, so the same speed): their context is a plain struct, unchanged since
OpenSSL 0.9.8, saved as its bytes.

Where those functions are missing (an OpenSSL built without its deprecated API) or the
struct is not laid out as checked at import, `resumable.new` answers None: callers then
use hashlib, and hash the stored bytes again when they must.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct
import sys
from typing import Final

# Context sizes and where md_len (the digest's length, set by Init) sits in them.
_LAYOUT: Final = {"sha256": (112, 108, 32), "sha512": (216, 212, 64)}
# The state's header: a format version and the byte order of the struct's words.
_HEADER: Final = b"ossl1" + (b"L" if sys.byteorder == "little" else b"B")


class Resumable:
    """A hashlib-like object (update, hexdigest) that can be saved (`state`) and made
    again from what was saved (`restore`)."""

    def __init__(self, functions: _Functions, context: ctypes.Array[ctypes.c_char]) -> None:
        self._f = functions
        self._ctx = context

    def update(self, data: bytes) -> None:
        # A foreign call through ctypes.CDLL releases the GIL, as hashlib does.
        self._f.update(self._ctx, bytes(data) if not isinstance(data, bytes) else data, len(data))

    def state(self) -> bytes:
        return _HEADER + self._ctx.raw[: self._f.size]

    def hexdigest(self) -> str:
        # Final destroys the context: it is run on a copy, so the hash may go on.
        copy = ctypes.create_string_buffer(self._ctx.raw, len(self._ctx))
        out = ctypes.create_string_buffer(self._f.digest_size)
        self._f.final(out, copy)
        return out.raw.hex()


class _Functions:
    def __init__(self, crypto: ctypes.CDLL, name: str) -> None:
        prefix = name.upper()
        self.name = name
        self.size, self._md_len_at, self.digest_size = _LAYOUT[name]
        self.init = getattr(crypto, f"{prefix}_Init")
        self.update = getattr(crypto, f"{prefix}_Update")
        self.final = getattr(crypto, f"{prefix}_Final")
        for function in (self.init, self.update, self.final):
            function.restype = ctypes.c_int
        self.init.argtypes = [ctypes.c_void_p]
        self.update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        self.final.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

    def new(self) -> Resumable:
        # Room to spare past the struct, in case a build's is larger than checked.
        context = ctypes.create_string_buffer(self.size + 64)
        if self.init(context) != 1:
            raise RuntimeError(f"{self.name}_Init failed")
        return Resumable(self, context)

    def restore(self, state: bytes) -> Resumable | None:
        raw = state[len(_HEADER) :]
        if not state.startswith(_HEADER) or len(raw) != self.size or not self._plausible(raw):
            return None
        context = ctypes.create_string_buffer(raw, self.size + 64)
        return Resumable(self, context)

    def _plausible(self, raw: bytes) -> bool:
        """A context as Init left it: md_len is the digest's length, num below a block."""
        num, md_len = struct.unpack_from("=II", raw, self._md_len_at - 4)
        return bool(md_len == self.digest_size and num < 2 * self.digest_size)

    def works(self) -> bool:
        """Whether a hash saved halfway and taken up again gives hashlib's digest."""
        data = bytes(range(256)) * 5
        try:
            first = self.new()
            first.update(data[:333])
            again = self.restore(first.state())
        except (AttributeError, RuntimeError, ctypes.ArgumentError):
            return False
        if again is None:
            return False
        again.update(data[333:])
        return again.hexdigest() == hashlib.new(self.name, data).hexdigest()


class Hashes:
    """The resumable hashes this machine's libcrypto offers, by algorithm name."""

    def __init__(self, functions: dict[str, _Functions]) -> None:
        self._functions = functions

    def new(self, algorithm: str) -> Resumable | None:
        found = self._functions.get(algorithm)
        return found.new() if found is not None else None

    def restore(self, algorithm: str, state: bytes) -> Resumable | None:
        """The hash `state` saved; None if it cannot be taken up here (another build or
        byte order, or no resumable hash): then the bytes are hashed again."""
        found = self._functions.get(algorithm)
        return found.restore(state) if found is not None else None


def _libcrypto() -> ctypes.CDLL | None:
    # The names hashlib's own libcrypto goes by; find_library (which runs ldconfig) only
    # if neither loads.
    for name in ("libcrypto.so.3", "libcrypto.so.1.1"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    found = ctypes.util.find_library("crypto")
    try:
        return ctypes.CDLL(found) if found else None
    except OSError:
        return None


def _load() -> Hashes:
    functions: dict[str, _Functions] = {}
    crypto = _libcrypto()
    if crypto is None:
        return Hashes(functions)
    for algorithm in _LAYOUT:
        try:
            candidate = _Functions(crypto, algorithm)
        except AttributeError:
            continue
        if candidate.works():
            functions[algorithm] = candidate
    return Hashes(functions)


resumable: Final = _load()
