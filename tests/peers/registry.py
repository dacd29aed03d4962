"""`registry serve` as a real process: on a free port, with its own data folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.peers.tools import free_port, launch, stop

REGISTRY = str(Path(sys.executable).parent / "registry")


class RegistryProcess:
    """`registry serve` on a free port with its own data folder; `code` is a folder with
    another version's `registry` package (and its migrations) to run instead of ours."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, code: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.command = [REGISTRY]
        if code is not None:
            self.command = [
                sys.executable,
                "-c",
                "import sys, registry.cli; sys.exit(registry.cli.main())",
            ]
        self.port = free_port()
        self.env = {
            **os.environ,
            "REGISTRY_DATA_DIR": str(data_dir),
            "REGISTRY_HTTP_HOST": "127.0.0.1",
            "REGISTRY_HTTP_PORT": str(self.port),
            "REGISTRY_AUTH_ENABLED": "false",
            # One process unless a test asks for more (the default is one per core).
            "REGISTRY_HTTP_WORKERS": "1",
            **(env or {}),
            **({"PYTHONPATH": str(code)} if code else {}),
        }
        self.log = data_dir.parent / f"registry-{self.port}.log"
        # Blob GETs answer 307 to S3 rather than stream.
        self.redirects = self.env.get("REGISTRY_STORAGE_S3_REDIRECT") == "true"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> RegistryProcess:
        self.process = launch([*self.command, "serve"], self.port, self.log, "registry", self.env)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def kill(self) -> None:
        """SIGKILL the whole server at once: the supervisor and every worker."""
        assert self.process is not None
        for pid in [*workers_of(self.process.pid), self.process.pid]:
            os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def answered(self, method: str, path: str, status: int | None = None) -> int:
        """Requests its access log shows (`path` as sent, query left out), of a status."""
        line = f"registry.access: {method} {path} " + (f"{status} " if status else "")
        return sum(line in entry for entry in self.log.read_text().splitlines())

    def cli_result(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a `registry` command against this server's settings, whatever its end."""
        return subprocess.run(
            [*self.command, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a `registry` command against this server's settings; it must succeed."""
        result = self.cli_result(*args, stdin=stdin)
        if result.returncode != 0:
            raise AssertionError(f"registry {' '.join(args)} failed:\n{result.stderr}")
        return result

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def workers_of(pid: int) -> list[int]:
    """The uvicorn worker processes of a `registry serve` (its spawned children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in map(int, children):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


def connections_by_worker(port: int, workers: list[int]) -> list[int]:
    """Established connections to `port` that each of `workers` holds (ss)."""
    listed = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [listed.count(f"pid={pid},") for pid in workers]
