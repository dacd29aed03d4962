"""Key files made on the first start: the token key and the sealing key. Replicas must
share them (a mounted secret, or the same data folder)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file at `path`, or `make()` written there (mode 0600) if it is absent.
    Creation is atomic (a link of a complete file), so workers starting together end up
    with one key: whoever links second reads the first's."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    content = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content)
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            return path.read_bytes()
    finally:
        os.unlink(temp)
    return content
