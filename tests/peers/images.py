"""Base images for the container tests, built from Debian's packages: Docker Hub is out of
these machines' reach, Debian's archive is not. mmdebstrap makes a bookworm root file
system with the packages a stand-in needs (about 30 s), `docker import` makes it an image.
Tarballs are cached by what goes into them, in REGISTRY_TEST_IMAGES (default
~/.cache/registry-test-images), so a second run only imports.

The Dockerfile and docker-compose.yml take these images' names from variables whose
defaults are the real images (python:3.11-slim, ...), so the same files build and run on
the stand-ins here and on Docker Hub's images for users.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.peers.tools import need

CACHE = Path(
    os.environ.get("REGISTRY_TEST_IMAGES", Path.home() / ".cache" / "registry-test-images")
)
# The host's way to PyPI (an index, a CA of its own), for pip in a build on the image.
HOST_PIP_FILES = ("/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt")


class DockerClient(Protocol):
    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class StandIn:
    """An image made of Debian packages, for an image of Docker Hub's."""

    name: str
    packages: tuple[str, ...]
    # Files copied from the host into the image, when the host has them.
    uploads: tuple[str, ...] = ()
    # `docker import --change` instructions (CMD, ENV, ...).
    changes: tuple[str, ...] = ()

    def key(self) -> str:
        present = [p for p in self.uploads if Path(p).exists()]
        contents = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in present]
        spec = json.dumps([self.packages, present, contents, self.changes])
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def tarball(self) -> Path:
        """The root file system, built once per key."""
        need("mmdebstrap")
        path = CACHE / f"{self.name.replace('/', '_').replace(':', '_')}-{self.key()}.tar"
        if path.exists():
            return path
        CACHE.mkdir(parents=True, exist_ok=True)
        hooks = [f"--customize-hook=upload {p} {p}" for p in self.uploads if Path(p).exists()]
        # mmdebstrap reads the format from the name's end.
        with tempfile.NamedTemporaryFile(dir=CACHE, suffix=".part.tar", delete=False) as part:
            pass
        try:
            made = subprocess.run(
                [
                    "mmdebstrap",
                    "--quiet",
                    "--variant=minbase",
                    f"--include={','.join(self.packages)}",
                    *hooks,
                    "bookworm",
                    part.name,
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if made.returncode != 0:
                raise RuntimeError(f"mmdebstrap for {self.name} failed:\n{made.stderr[-2000:]}")
            os.replace(part.name, path)  # whole or not at all, for runs side by side
        finally:
            Path(part.name).unlink(missing_ok=True)
        return path

    def load(self, docker: DockerClient) -> str:
        """The image in `docker`'s store (imported unless it is there); its name."""
        if docker.run("image", "inspect", self.name, check=False).returncode != 0:
            changes = [arg for change in self.changes for arg in ("--change", change)]
            docker.run("import", *changes, str(self.tarball()), self.name)
        return self.name


# The Dockerfile's PYTHON_IMAGE: Python 3.11 with venv, as python:3.11-slim has them.
PYTHON = StandIn(
    "local/python:3.11",
    ("python3", "python3-venv", "ca-certificates"),
    uploads=HOST_PIP_FILES,
    changes=('CMD ["python3"]',),
)
