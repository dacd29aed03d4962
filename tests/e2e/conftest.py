"""Real processes: the registry under `registry serve`, a Docker daemon, skopeo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import s3_environment
from tests.peers.images import NGINX, POSTGRES, PYTHON, S3
from tests.peers.registry import RegistryProcess
from tests.peers.s3 import MotoServer
from tests.peers.tools import need, run_tool, stop, tail

ROOT = Path(__file__).resolve().parents[2]
# The name docker-compose.yml gives the image it builds.
REGISTRY_IMAGE = "registry:local"
# The images of Docker Hub's that the image and the compose stack are tested on.
STAND_INS = (PYTHON, NGINX, POSTGRES, S3)


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
    """A private dockerd. `bridges` gives it bridge networks and published ports (its
    own iptables rules, as compose needs); without, containers run on the host's network
    or none, and the daemon leaves the host's firewall alone."""

    def __init__(
        self, root: Path, daemon_json: dict[str, object] | None = None, bridges: bool = False
    ) -> None:
        need("dockerd")
        self.client = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else need("docker")
        self.root = root
        self.socket = root / "docker.sock"
        self.log = root / "dockerd.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    # No --storage-driver: dockerd takes overlay2 where the kernel and the
                    # data root's file system allow it, as here (ext4), and vfs otherwise.
                    # vfs copies a whole root file system for every layer and container:
                    # the compose stack's setup took 475 s on it.
                    "dockerd",
                    *(
                        ()
                        if bridges
                        else ("--iptables=false", "--ip6tables=false", "--bridge=none")
                    ),
                    "--data-root",
                    str(root / "root"),
                    "--exec-root",
                    str(root / "exec"),
                    "-H",
                    f"unix://{self.socket}",
                    "--pidfile",
                    str(root / "pid"),
                    *_config_file(root, daemon_json),
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
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client; `config` is its DOCKER_CONFIG folder (where logins are
        kept), so each test identity has its own."""
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        if config is not None:
            env["DOCKER_CONFIG"] = str(config)
        return run_tool([self.client, *args], check=check, env=env, input=stdin, timeout=timeout)

    def stop(self) -> None:
        stop(self.process, timeout=30)


def _config_file(root: Path, daemon_json: dict[str, object] | None) -> list[str]:
    if daemon_json is None:
        return []
    path = root / "daemon.json"
    path.write_text(json.dumps(daemon_json))
    return ["--config-file", str(path)]


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


@pytest.fixture(scope="session")
def stack_docker() -> Iterator[Docker]:
    """The daemon that runs the registry's image and the compose stack; `docker` is the
    client outside them. The stand-in images it will run are built meanwhile, side by
    side (one after the other, they held up its tests for minutes on a fresh machine)."""
    for image in STAND_INS:
        image.prepare()
    yield from _session_daemon(partial(Docker, bridges=True), "registry-stack-")


@pytest.fixture(scope="session")
def registry_image(stack_docker: Docker) -> str:
    """The Dockerfile built on the Python stand-in, under the name compose gives it."""
    base = PYTHON.load(stack_docker)
    # pip reaches PyPI through the host's network (and its pip.conf, in the base).
    stack_docker.run(
        "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}",
        "-t", REGISTRY_IMAGE, str(ROOT), timeout=1200,
    )  # fmt: skip
    return REGISTRY_IMAGE


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
        return run_tool([self.ctr, "--address", str(self.socket), *args], check=check)

    def stop(self) -> None:
        stop(self.process, timeout=30)


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    yield from _session_daemon(Containerd, "registry-containerd-")


@pytest.fixture(scope="session")
def skopeo() -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = need("skopeo")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_tool([binary, *args], check=check)

    return run


@pytest.fixture(scope="session")
def busybox() -> bytes:
    path = Path("/bin/busybox")
    if not path.exists():
        need("busybox")  # skips, or fails in strict mode
    return path.read_bytes()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by Playwright."""
    chromium = need("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()
