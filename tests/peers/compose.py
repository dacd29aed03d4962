"""The compose stack of docker-compose.yml, run by a test's Docker daemon from a copy of
the files it needs, under a project name of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Protocol

from tests.peers.tools import need, run_tool

ROOT = Path(__file__).resolve().parents[2]
# What `make secrets` and `docker compose up` read, besides the image they run.
STACK_FILES = (
    "docker-compose.yml",
    "docker-compose.s3.yml",
    "Makefile",
    "nginx/registry.conf.template",
)


class Daemon(Protocol):
    client: str
    socket: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]: ...


def compose_command(daemon: Daemon) -> list[str]:
    """`docker compose` where the plugin is there; otherwise Debian's docker-compose 1.x,
    with --compatibility so that `deploy.replicas` counts as it does for the plugin."""
    plugin = subprocess.run(
        [daemon.client, "compose", "version"], capture_output=True, env=_env(daemon)
    )
    if plugin.returncode == 0:
        return [daemon.client, "compose"]
    return [need("docker-compose"), "--compatibility"]


def _env(daemon: Daemon) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": f"unix://{daemon.socket}"}


class Compose:
    """The stack of docker-compose.yml and the `overrides` on it (other compose files)."""

    def __init__(
        self,
        daemon: Daemon,
        folder: Path,
        project: str,
        variables: dict[str, str],
        overrides: tuple[Path, ...] = (),
    ) -> None:
        self.daemon = daemon
        self.folder = folder
        self.project = project
        files = ["docker-compose.yml", *(str(path) for path in overrides)]
        self.command = [*compose_command(daemon), *(a for f in files for a in ("-f", f))]
        self.env = {**_env(daemon), **variables, "COMPOSE_PROJECT_NAME": project}
        self.env["COMPOSE"] = " ".join(self.command)  # for the Makefile's backup, restore
        for name in STACK_FILES:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, folder / name)

    def make(self, target: str) -> None:
        subprocess.run(["make", "-s", target], cwd=self.folder, env=self.env, check=True)

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        command = [*self.command, *args]
        return run_tool(command, check=check, cwd=self.folder, env=self.env, timeout=timeout)

    def containers(self, service: str | None = None, every: bool = False) -> list[str]:
        """Names of the project's containers (running, or `every` one), of `service` or all."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        listed = self.daemon.run(
            "ps", *(["-a"] if every else []), *filters, "--format", "{{.Names}}"
        )
        return sorted(listed.stdout.split())

    def networks(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        listed = self.daemon.run("network", "ls", "--filter", label, "--format", "{{.Name}}")
        return listed.stdout.split()

    def volumes(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        listed = self.daemon.run("volume", "ls", "--filter", label, "--format", "{{.Name}}")
        return sorted(listed.stdout.split())

    def logs(self, container: str) -> str:
        found = self.daemon.run("logs", container)
        return found.stdout + found.stderr

    def wait_healthy(self, timeout: float = 180) -> None:
        """Until every container is running, each with a healthcheck passing it, or has
        done its work (exited with 0, as a one-off job does)."""
        state = (
            "{{.State.Status}} {{.State.ExitCode}} "
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}"
        )
        good = (["running", "0"], ["running", "0", "healthy"], ["exited", "0"])
        deadline = time.monotonic() + timeout
        while True:
            states = {
                name: self.daemon.run("inspect", "--format", state, name).stdout.split()
                for name in self.containers(every=True)
            }
            if states and all(found in good for found in states.values()):
                return
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"--- {name}: {' '.join(state)}\n{self.logs(name)[-1500:]}"
                    for name, state in states.items()
                )
                raise AssertionError(f"the stack is not healthy after {timeout:.0f} s:\n{tails}")
            time.sleep(1)
