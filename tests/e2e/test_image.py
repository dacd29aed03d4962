"""The Dockerfile, built and run by a real Docker daemon on a Python base made from
Debian's packages (tests/peers/images.py): the registry serves as its unprivileged user,
a Docker client pushes to it and pulls from it, and its healthcheck (GET /ready) turns
unhealthy while PostgreSQL is away and healthy again when it is back."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Docker
from tests.e2e.images import image_id, load_image
from tests.peers.postgres import PostgresServer
from tests.peers.tools import free_port

# The image's user (Dockerfile), not root.
REGISTRY_UID = "10001"


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    pg = PostgresServer(private=True)  # one this test may stop
    pg.execute("CREATE DATABASE registry")
    yield pg
    pg.stop()


def health(docker: Docker, name: str) -> str:
    return docker.run("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()


def wait_health(docker: Docker, name: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (found := health(docker, name)) != wanted:
        if time.monotonic() > deadline:
            logs = docker.run("logs", "--tail", "20", name, check=False)
            raise AssertionError(f"{name} is {found}, not {wanted}:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.5)


def test_the_image_serves_as_its_user_and_its_healthcheck_follows_the_database(
    stack_docker: Docker,
    docker: Docker,
    registry_image: str,
    postgres: PostgresServer,
    tmp_path: Path,
    busybox: bytes,
) -> None:
    port = free_port()
    name = f"registry-e2e-{port}"
    stack_docker.run(
        "run", "-d", "--name", name, "--network", "host",
        # The image's own check, on a faster clock than its defaults (10 s, 3 retries).
        "--health-interval", "1s", "--health-retries", "2", "--health-start-period", "0s",
        "-e", f"REGISTRY_HTTP_PORT={port}",
        "-e", "REGISTRY_HTTP_HOST=127.0.0.1",
        "-e", "REGISTRY_AUTH_ENABLED=false",
        "-e", f"REGISTRY_DATABASE_URL={postgres.url_for('registry')}",
        "-e", "REGISTRY_DATABASE_TIMEOUT_SECONDS=2",
        registry_image,
    )  # fmt: skip
    try:
        wait_health(stack_docker, name, "healthy")
        status = stack_docker.run("exec", name, "cat", "/proc/1/status").stdout
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        assert uid == REGISTRY_UID
        # Workers sized to the cores the container may use (all of this machine's).
        count = (  # (leaving out this python, whose own command line says spawn_main)
            "import glob, os; print(sum(b'spawn_main' in open(p, 'rb').read() "
            "for p in glob.glob('/proc/[0-9]*/cmdline') if p != f'/proc/{os.getpid()}/cmdline'))"
        )
        workers = int(stack_docker.run("exec", name, "python", "-c", count).stdout)
        cores = len(os.sched_getaffinity(0))
        assert workers == (cores if cores > 1 else 0)
        assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200

        ref = f"127.0.0.1:{port}/image/app:v1"
        expected = load_image(docker, tmp_path, busybox, ref, "from the image")
        docker.run("push", ref)
        docker.run("rmi", ref)
        docker.run("pull", ref)
        assert image_id(docker, ref) == expected

        postgres.halt()
        wait_health(stack_docker, name, "unhealthy")
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200  # alive
        postgres.start()
        wait_health(stack_docker, name, "healthy")
        docker.run("rmi", ref)
        docker.run("pull", ref)  # its data came through
    finally:
        stack_docker.run("rm", "-f", name, check=False)
