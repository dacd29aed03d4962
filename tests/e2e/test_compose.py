"""The compose stack for real, step by step as README.md's "The compose stack" says:
`make secrets`, `docker compose up -d`, a Docker daemon outside the stack logging in over
TLS with the generated certificate trusted, pushing and pulling a large layer whose GETs
nginx sends from the blob volume, three replicas sharing one chunked upload, the whole
stack down and up again with its data, `make backup` restored by `make restore` into
empty volumes, and `docker compose down` leaving nothing running.

The stack runs on a daemon with bridge networks (stack_docker) from the images made of
Debian's packages (tests/peers/images.py); the client is the tests' other daemon, on the
host's network, reaching nginx's published port at the host's own address: not on
127.0.0.0/8, so Docker insists on a certificate it trusts there."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import ssl
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Docker
from tests.e2e.images import image_id, load_image
from tests.helpers import TokenAuth, bearer, parse_challenge
from tests.peers.compose import Compose
from tests.peers.images import NGINX, POSTGRES, S3
from tests.peers.tools import free_port, host_address

CERTS = Path("/etc/docker/certs.d")
MOTO_OVERRIDE = Path(__file__).with_name("compose.moto.yml")
# Larger than nginx's default body limit (1 MiB), which the template lifts; nginx sends
# it from the volume. (64 MiB proved the same, at four times the client's CPU.)
LARGE = 16 * 1024 * 1024
# The registry's access line: "METHOD PATH STATUS N B in, N B out, ...".
ACCESS = re.compile(r"registry\.access: (\w+) (\S+) (\d+) (\d+) B in, (\d+) B out")


@dataclass
class Stack:
    compose: Compose
    host: str  # what clients name the registry by: nginx's HTTPS address and port


@pytest.fixture(scope="module")
def stack(
    stack_docker: Docker, registry_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    address = host_address()
    https = free_port()
    compose = Compose(
        stack_docker,
        tmp_path_factory.mktemp("stack"),
        f"e2e{https}",
        {
            "REGISTRY_HOSTNAME": address,
            "HTTP_PORT": str(free_port()),
            "HTTPS_PORT": str(https),
            "NGINX_IMAGE": NGINX.load(stack_docker),
            "POSTGRES_IMAGE": POSTGRES.load(stack_docker),
        },
    )
    yield Stack(compose, f"{address}:{https}")
    compose.run("down", "--volumes", "--remove-orphans", check=False)
    shutil.rmtree(CERTS / f"{address}:{https}", ignore_errors=True)


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def wait_for_nginx(host: str, ca: Path, timeout: float = 60) -> None:
    """Until nginx answers over TLS (it has no healthcheck: the image has no client)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"https://{host}/v2/", verify=trusting(ca)).status_code == 401:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nginx at {host} does not answer GET /v2/ with 401")
        time.sleep(0.2)


def token_for(host: str, ca: Path, password: str, scope: str) -> dict[str, str]:
    """An Authorization header for `scope`, from the token endpoint the registry names."""
    challenge = parse_challenge(
        httpx.get(f"https://{host}/v2/", verify=trusting(ca)).headers["www-authenticate"]
    )
    answer = httpx.get(
        challenge["realm"],
        params={"service": challenge["service"], "scope": scope},
        auth=("admin", password),
        verify=trusting(ca),
    )
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["token"])


def wait_for_replica(
    compose: Compose, host: str, ca: Path, replica: str, timeout: float = 60
) -> None:
    """Until requests through nginx, each on a connection of its own, reach `replica`:
    then nginx's workers of the reloaded configuration are the ones taking connections
    (an old one closes its connections as it finishes, which a client sees as a
    connection closed under it)."""
    deadline = time.monotonic() + timeout
    while not any(path == "/v2/" for _, path, _, _ in access_lines(compose, replica)):
        if time.monotonic() > deadline:
            raise AssertionError(f"nginx sends no request to {replica} after its reload")
        httpx.get(f"https://{host}/v2/", verify=trusting(ca))
        time.sleep(0.1)


def access_lines(compose: Compose, container: str) -> list[tuple[str, str, int, int]]:
    """(method, path, status, bytes out) of each request a replica served."""
    return [
        (m[1], m[2], int(m[3]), int(m[5]))
        for m in (ACCESS.search(line) for line in compose.logs(container).splitlines())
        if m
    ]


def replicas_by_upload(compose: Compose) -> dict[str, set[str]]:
    """For each upload session, the replicas that served its PATCH and PUT requests."""
    served: dict[str, set[str]] = defaultdict(set)
    for container in compose.containers("registry"):
        for method, path, _, _ in access_lines(compose, container):
            if method in ("PATCH", "PUT") and "/blobs/uploads/" in path:
                served[path.rsplit("/", 1)[1]].add(container)
    return served


def test_the_stack_serves_docker_over_tls_scales_restarts_and_comes_down(
    stack: Stack, docker: Docker, tmp_path: Path, busybox: bytes
) -> None:
    host = stack.host
    compose = stack.compose
    compose.make("secrets")
    password = (compose.folder / "secrets" / "admin_password").read_text().strip()
    ca = compose.folder / "secrets" / "tls_cert"

    compose.run("up", "-d")
    compose.wait_healthy()
    wait_for_nginx(host, ca)
    assert len(compose.containers("registry")) == 2  # deploy.replicas
    assert compose.run("exec", "-T", "registry", "id", "-u").stdout.strip() == "10001"

    # Docker refuses the self-signed certificate until it is trusted, then logs in.
    login = ("login", "-u", "admin", "--password-stdin", host)
    refused = docker.run(*login, stdin=password, config=tmp_path / "client", check=False)
    assert refused.returncode != 0
    assert "x509: certificate signed by unknown authority" in refused.stderr
    (CERTS / host).mkdir(parents=True, exist_ok=True)
    shutil.copy(ca, CERTS / host / "ca.crt")
    logged_in = docker.run(*login, stdin=password, config=tmp_path / "client")
    assert "Login Succeeded" in logged_in.stdout

    # A large layer up and down; nginx sends its bytes from the volume.
    ref = f"{host}/admin/app:v1"
    expected = load_image(docker, tmp_path, busybox, ref, "compose", size=LARGE)
    docker.run("push", ref, config=tmp_path / "client")
    docker.run("rmi", ref)
    docker.run("pull", ref, config=tmp_path / "client")
    assert image_id(docker, ref) == expected
    blob_gets = [
        line
        for container in compose.containers("registry")
        for line in access_lines(compose, container)
        if line[0] == "GET" and "/blobs/sha256:" in line[1] and line[2] == 200
    ]
    assert blob_gets, "no blob GET reached a replica"
    # The replicas answered with X-Accel-Redirect and no body; nginx sent the layer.
    assert all(sent == 0 for *_, sent in blob_gets)
    nginx_log = compose.logs(compose.containers("nginx")[0])
    sizes = [
        int(m[1])
        for m in re.finditer(r'"GET /v2/admin/app/blobs/\S+ HTTP/1.1" 200 (\d+)', nginx_log)
    ]
    assert max(sizes) > LARGE

    # Three replicas; nginx learns the new one's address on a reload.
    compose.run("up", "-d", "--scale", "registry=3")
    compose.wait_healthy()
    assert len(compose.containers("registry")) == 3
    compose.run("exec", "-T", "nginx", "nginx", "-s", "reload")
    wait_for_replica(compose, host, ca, compose.containers("registry")[-1])
    # One upload in chunks, each PATCH a request of its own: they land on different
    # replicas, which share the session through the volume and the database.
    # The token first, as docker gets it: a 401 to a PATCH whose body nginx has not
    # passed on yet ends that connection, which a client retrying on it sees as a reset.
    with httpx.Client(
        base_url=f"https://{host}",
        verify=trusting(ca),
        headers=token_for(host, ca, password, "repository:admin/chunks:pull,push"),
    ) as client:
        data = os.urandom(6 * 1024 * 1024)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = client.post("/v2/admin/chunks/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        step = 1024 * 1024
        for offset in range(0, len(data), step):
            chunk = data[offset : offset + step]
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            }
            patched = client.patch(location, content=chunk, headers=headers)
            assert patched.status_code == 202, patched.text
            location = patched.headers["location"]
        closed = client.put(location, params={"digest": digest})
        assert closed.status_code == 201, closed.text
        fetched = client.get(f"/v2/admin/chunks/blobs/{digest}")
        assert fetched.status_code == 200 and fetched.content == data
    upload_id = location.split("?")[0].rsplit("/", 1)[1]
    assert len(replicas_by_upload(compose)[upload_id]) == 3

    ref2 = f"{host}/admin/app:v2"
    expected2 = load_image(docker, tmp_path, busybox, ref2, "scaled")
    docker.run("push", ref2, config=tmp_path / "client")

    # The whole stack down and up: the index and the blobs are in volumes.
    compose.run("down")
    assert compose.containers(every=True) == []
    compose.run("up", "-d")
    compose.wait_healthy()
    wait_for_nginx(host, ca)
    for pushed, image in ((ref, expected), (ref2, expected2)):
        docker.run("rmi", pushed)
        docker.run("pull", pushed, config=tmp_path / "client")
        assert image_id(docker, pushed) == image

    # A backup, restored into a stack with new, empty volumes: every image pulls.
    compose.make("backup")
    compose.run("down", "--volumes")
    assert compose.volumes() == []
    compose.make("restore")  # ends with `registry check --repair`, which must pass
    wait_for_nginx(host, ca)
    for pushed, image in ((ref, expected), (ref2, expected2)):
        docker.run("rmi", pushed)
        docker.run("pull", pushed, config=tmp_path / "client")
        assert image_id(docker, pushed) == image
    with httpx.Client(
        base_url=f"https://{host}", verify=trusting(ca), auth=TokenAuth("admin", password)
    ) as client:
        assert client.get(f"/v2/admin/chunks/blobs/{digest}").content == data

    # Down leaves no container and no network; the volumes stay until `down --volumes`.
    compose.run("down")
    assert compose.containers(every=True) == []
    assert compose.networks() == []
    assert [volume.rsplit("_", 1)[1] for volume in compose.volumes()] == ["blobs", "postgres"]


def test_the_s3_file_keeps_blobs_in_s3(
    stack_docker: Docker,
    registry_image: str,
    docker: Docker,
    tmp_path: Path,
    busybox: bytes,
) -> None:
    """docker-compose.s3.yml on top: the blobs go to the S3 server (moto in MinIO's
    place), and the replicas stream them back; plain HTTP on 127.0.0.1 this time."""
    http = free_port()
    compose = Compose(
        stack_docker,
        tmp_path / "stack",
        f"e2es3{http}",
        {
            "HTTP_PORT": str(http),
            "HTTPS_PORT": str(free_port()),
            "NGINX_IMAGE": NGINX.load(stack_docker),
            "POSTGRES_IMAGE": POSTGRES.load(stack_docker),
            "S3_IMAGE": S3.load(stack_docker),
        },
        overrides=(Path("docker-compose.s3.yml"), MOTO_OVERRIDE),
    )
    try:
        compose.make("secrets")
        password = (compose.folder / "secrets" / "admin_password").read_text().strip()
        compose.run("up", "-d")
        compose.wait_healthy()
        host = f"127.0.0.1:{http}"
        config = tmp_path / "client"
        docker.run("login", "-u", "admin", "--password-stdin", host, stdin=password, config=config)
        ref = f"{host}/admin/s3:v1"
        expected = load_image(docker, tmp_path, busybox, ref, "s3", size=8 * 1024 * 1024)
        docker.run("push", ref, config=config)
        docker.run("rmi", ref)
        docker.run("pull", ref, config=config)
        assert image_id(docker, ref) == expected
        sent = [
            line[3]
            for container in compose.containers("registry")
            for line in access_lines(compose, container)
            if line[0] == "GET" and "/blobs/sha256:" in line[1] and line[2] == 200
        ]
        assert max(sent) > 8 * 1024 * 1024  # the large layer, from S3 through a replica
        bucket = compose.run(
            "exec", "-T", "minio", "python3", "-c",
            "import boto3; print(len(boto3.client('s3', endpoint_url='http://127.0.0.1:9000',"
            " region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x')"
            ".list_objects_v2(Bucket='registry').get('Contents', [])))",
        )  # fmt: skip
        assert int(bucket.stdout) >= 4  # three layers and the config
    finally:
        compose.run("down", "--volumes", check=False)
