"""Real processes: the registry under `registry serve`, a Docker daemon, skopeo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import httpx
import pytest

from tests.conftest import s3_environment
from tests.peers.s3 import MotoServer
from tests.peers.tools import free_port, need, stop, tail, wait_for_port

REGISTRY = str(Path(sys.executable).parent / "registry")


class RegistryProcess:
    """`registry serve` on a free port with its own data folder."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "REGISTRY_DATA_DIR": str(data_dir),
            "REGISTRY_HTTP_HOST": "127.0.0.1",
            "REGISTRY_HTTP_PORT": str(self.port),
            "REGISTRY_AUTH_ENABLED": "false",
            **(env or {}),
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
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [REGISTRY, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port, self.process)
        except Exception as exc:
            raise RuntimeError(f"registry did not start:\n{tail(self.log)}") from exc
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a `registry` command against this server's settings."""
        result = subprocess.run(
            [REGISTRY, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise AssertionError(f"registry {' '.join(args)} failed:\n{result.stderr}")
        return result

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def store_environment(request: pytest.FixtureRequest, store: str) -> dict[str, str]:
    """Settings for `store`: filesystem, s3-redirect (blob GETs answer 307 to presigned
    URLs) or s3-stream (the registry streams blob bytes from S3)."""
    env = {"REGISTRY_LOG_LEVEL": "info"}
    if store != "filesystem":
        s3: MotoServer = request.getfixturevalue("s3_server")
        env.update(s3_environment(s3, s3.new_bucket()))
        env["REGISTRY_STORAGE_S3_REDIRECT"] = str(store == "s3-redirect").lower()
    return env


@pytest.fixture(params=["filesystem", "s3-redirect", "s3-stream"])
def registry_process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryProcess]:
    """`registry serve`, open (no auth), on each blob store."""
    server = RegistryProcess(tmp_path / "data", store_environment(request, request.param))
    yield server.start()
    server.stop()


class Docker:
    def __init__(self, root: Path) -> None:
        need("dockerd")
        self.client = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else need("docker")
        self.root = root
        self.socket = root / "docker.sock"
        self.log = root / "dockerd.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    "dockerd",
                    "--storage-driver=vfs",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--bridge=none",
                    "--data-root",
                    str(root / "root"),
                    "--exec-root",
                    str(root / "exec"),
                    "-H",
                    f"unix://{self.socket}",
                    "--pidfile",
                    str(root / "pid"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while self.run("version", check=False).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"dockerd did not start:\n{tail(self.log)}")
            time.sleep(0.5)

    def run(
        self,
        *args: str,
        check: bool = True,
        config: Path | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client; `config` is its DOCKER_CONFIG folder (where logins are
        kept), so each test identity has its own."""
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        if config is not None:
            env["DOCKER_CONFIG"] = str(config)
        result = subprocess.run(
            [self.client, *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def stop(self) -> None:
        stop(self.process, timeout=30)


class _Daemon(Protocol):
    def stop(self) -> None: ...


D = TypeVar("D", bound=_Daemon)


def _session_daemon(factory: Callable[[Path], D], prefix: str) -> Iterator[D]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    daemon = factory(root)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    yield from _session_daemon(Docker, "registry-docker-")


class Containerd:
    """A private containerd (no CRI), driven with `ctr`; it pulls and pushes with the
    OAuth2 POST /token flow, where docker uses GET."""

    def __init__(self, root: Path) -> None:
        binary = need("containerd")
        self.ctr = need("ctr")
        self.socket = root / "containerd.sock"
        config = root / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{root / "root"}"\n'
            f'state = "{root / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
        )
        self.log = root / "containerd.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while self.run("version", check=False).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"containerd did not start:\n{tail(self.log)}")
            time.sleep(0.5)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.ctr, "--address", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def stop(self) -> None:
        stop(self.process, timeout=30)


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    yield from _session_daemon(Containerd, "registry-containerd-")


@pytest.fixture(scope="session")
def skopeo() -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = need("skopeo")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(
                f"skopeo {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def busybox() -> bytes:
    path = Path("/bin/busybox")
    if not path.exists():
        need("busybox")  # skips, or fails in strict mode
    return path.read_bytes()
