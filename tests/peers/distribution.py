"""CNCF Distribution 2.8 (Debian's `docker-registry`), the reference registry: an upstream
for mirror tests. It logs every request in the combined log format, so tests count what the
mirror asked of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.peers.tools import free_port, launch, need, stop


class Distribution:
    """Plain HTTP, or HTTPS with `tls` (a certificate and its key, PEM files)."""

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.binary = need("docker-registry")
        self.root = root
        self.port = free_port()
        self.storage = root / "storage"
        self.log = root / "distribution.log"
        self.config = root / "config.yml"
        self.tls = tls
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            # Upload URLs stay valid across a restart (their state is signed with it).
            "  secret: a-test-secret\n"
            # A stop lets requests in flight end, as an operator's restart does.
            "  draintimeout: 10s\n"
            + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self) -> Distribution:
        args = [self.binary, "serve", str(self.config)]
        self.process = launch(args, self.port, self.log, "docker-registry")
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def requests(self, method: str, path: str) -> int:
        """How many `method path` requests it has answered."""
        line = f'"{method} {path} HTTP/1.1"'
        return sum(line in entry for entry in self.log.read_text().splitlines())

    def requests_under(self, method: str, prefix: str) -> int:
        """How many `method` requests to paths under `prefix` it has answered."""
        start = f'"{method} {prefix}'
        return sum(start in entry for entry in self.log.read_text().splitlines())

    def blob_file(self, digest: str) -> Path:
        algorithm, hex_ = digest.split(":")
        return self.storage / f"docker/registry/v2/blobs/{algorithm}/{hex_[:2]}/{hex_}/data"
