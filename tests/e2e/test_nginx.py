"""The shipped nginx/registry.conf.template in front of two `registry serve` replicas that
share one PostgreSQL database, one blob folder and one token key: a real Docker daemon
logs in, pushes and pulls through nginx (plain HTTP, and HTTPS with the CA trusted in
certs.d, refusing the certificate without), uploads cross replicas, and nginx sends blob
files itself (X-Accel-Redirect)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Docker
from tests.e2e.images import image_id, layer_tar, load_image, make_image, write_docker_archive
from tests.helpers import basic, parse_challenge
from tests.peers.nginx import RegistryNginx
from tests.peers.postgres import PostgresServer
from tests.peers.receiver import Receiver
from tests.peers.registry import RegistryProcess
from tests.peers.tls import self_signed
from tests.peers.tools import host_address

ADMIN_PASSWORD = "nginx-admin-password"
# Where dockerd looks for the CAs it trusts, per registry host:port.
CERTS = Path("/etc/docker/certs.d")
# Past every limit of nginx's own that the template lifts (a 1 MiB request body; bodies
# spooled to disk): 16 MiB proves what 200 MiB did, for a twelfth of the CPU that the
# client's compression and hashing took.
BIG = 16 * 1024 * 1024


@dataclass
class Stack:
    nginx: RegistryNginx
    replicas: list[RegistryProcess]
    cert: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.nginx.port}"

    @property
    def tls_host(self) -> str:
        """Where nginx serves TLS: off the loopback, so Docker verifies the certificate."""
        return f"{self.nginx.tls_address}:{self.nginx.tls_port}"

    def access_log(self) -> list[str]:
        return self.nginx.access_log.read_text().splitlines()


@pytest.fixture(scope="module")
def stack(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    name = f"registry_nginx_{os.getpid()}"
    postgres.execute(f"CREATE DATABASE {name} TEMPLATE {postgres.template}")  # type: ignore[attr-defined]
    # What replicas share: the database, the blob folder, the token key, the admin password.
    shared = {
        "REGISTRY_DATABASE_URL": postgres.url_for(name),
        "REGISTRY_STORAGE_ROOT": str(root / "storage"),
        "REGISTRY_STORAGE_ACCEL_REDIRECT": "/_blobs/",
        "REGISTRY_AUTH_KEY_FILE": str(root / "token.key"),
        "REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "REGISTRY_LOG_LEVEL": "info",
        "REGISTRY_AUTH_ENABLED": "true",
    }
    replicas = [RegistryProcess(root / f"replica{i}", shared) for i in range(2)]
    for replica in replicas:
        replica.start()
    address = host_address()
    cert, key = self_signed(root / "tls", address)
    nginx = RegistryNginx(
        root / "nginx", [r.port for r in replicas], root / "storage", cert, key, address
    ).start()
    yield Stack(nginx, replicas, cert)
    nginx.stop()
    for replica in replicas:
        replica.stop()
    postgres.drop_database(name)


def test_docker_login_push_and_pull_of_a_large_layer_through_nginx(
    docker: Docker, stack: Stack, tmp_path: Path, busybox: bytes
) -> None:
    config = tmp_path / "docker-config"
    docker.run(
        "login", stack.host, "-u", "admin", "--password-stdin", config=config, stdin=ADMIN_PASSWORD
    )
    big = os.urandom(BIG)
    image = make_image([layer_tar({"bin/busybox": busybox}), layer_tar({"data/big": big})])
    ref = f"{stack.host}/admin/big:v1"
    docker.run("load", "-i", str(write_docker_archive(image, ref, tmp_path / "big.tar")))
    docker.run("push", ref, config=config)
    docker.run("rmi", ref)
    docker.run("pull", ref, config=config)
    assert image_id(docker, ref) == image.id
    docker.run("rmi", ref)

    # Both replicas took part in the push (nginx spreads requests round-robin).
    for replica in stack.replicas:
        assert "/v2/admin/big/" in replica.log.read_text()
    # The big layer went out through nginx, sent from the file by nginx: its upstream
    # (the registry) answered with no body at all.
    big_gets = [
        line
        for line in stack.access_log()
        if '"GET /v2/admin/big/blobs/sha256:' in line and int(line.split()[-2]) > BIG // 2
    ]
    assert big_gets, stack.access_log()[-20:]
    assert all(line.endswith("upstream_bytes=0") for line in big_gets), big_gets


def test_docker_over_https_trusts_the_ca_in_certs_d_and_refuses_others(
    docker: Docker, stack: Stack, tmp_path: Path, busybox: bytes
) -> None:
    config = tmp_path / "docker-config"
    login = ("login", stack.tls_host, "-u", "admin", "--password-stdin")
    refused = docker.run(*login, config=config, stdin=ADMIN_PASSWORD, check=False)
    assert refused.returncode != 0
    assert "x509: certificate signed by unknown authority" in refused.stderr
    trusted = CERTS / stack.tls_host
    trusted.mkdir(parents=True)
    try:
        shutil.copy(stack.cert, trusted / "ca.crt")
        assert "Login Succeeded" in docker.run(*login, config=config, stdin=ADMIN_PASSWORD).stdout
        ref = f"{stack.tls_host}/admin/https:v1"
        expected = load_image(docker, tmp_path, busybox, ref, "https")
        docker.run("push", ref, config=config)
        docker.run("rmi", ref)
        docker.run("pull", ref, config=config)
        assert image_id(docker, ref) == expected
        docker.run("rmi", ref)
    finally:
        shutil.rmtree(trusted)


def test_a_chunked_upload_crosses_replicas(stack: Stack) -> None:
    first, second = (
        httpx.Client(base_url=r.url, headers=basic("admin", ADMIN_PASSWORD)) for r in stack.replicas
    )
    data = os.urandom(3 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with first, second:
        r = first.post("/v2/admin/chunked/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["location"]
        r = first.patch(location, content=data[:1_000_000], headers={"Content-Range": "0-999999"})
        assert r.status_code == 202
        r = second.patch(
            r.headers["location"],
            content=data[1_000_000:],
            headers={"Content-Range": f"1000000-{len(data) - 1}"},
        )
        assert r.status_code == 202, r.text
        r = second.put(r.headers["location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        assert first.head(f"/v2/admin/chunked/blobs/{digest}").headers["content-length"] == str(
            len(data)
        )
    # Through nginx, a Range request is answered by nginx from the file.
    with httpx.Client(base_url=stack.nginx.url, headers=basic("admin", ADMIN_PASSWORD)) as client:
        r = client.get(f"/v2/admin/chunked/blobs/{digest}", headers={"Range": "bytes=100-199"})
        assert r.status_code == 206
        assert r.content == data[100:200]
        assert r.headers["docker-content-digest"] == digest
        assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert stack.access_log()[-1].endswith("upstream_bytes=0")


def test_challenges_and_locations_carry_nginx_address(stack: Stack) -> None:
    r = httpx.get(f"{stack.nginx.url}/v2/")
    assert r.status_code == 401
    assert parse_challenge(r.headers["www-authenticate"])["realm"] == f"http://{stack.host}/token"
    tls = f"https://{stack.tls_host}"
    trust = ssl.create_default_context(cafile=str(stack.cert))
    with httpx.Client(base_url=tls, verify=trust) as client:
        r = client.get("/v2/")
        assert r.status_code == 401
        realm = parse_challenge(r.headers["www-authenticate"])["realm"]
        assert realm == f"{tls}/token"
        # The token endpoint answers there, over TLS, and the token opens /v2/.
        token = client.get(realm, auth=("admin", ADMIN_PASSWORD)).json()["token"]
        assert client.get("/v2/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        r = client.post("/v2/admin/tls/blobs/uploads/", auth=("admin", ADMIN_PASSWORD))
        assert r.status_code == 202
        # Relative: the client resolves it against the address it used, nginx's.
        assert re.fullmatch(r"/v2/admin/tls/blobs/uploads/[0-9a-f-]{36}", r.headers["location"])
        assert str(client.base_url.join(r.headers["location"])).startswith(tls)


def test_the_health_endpoint_answers_through_nginx(stack: Stack) -> None:
    r = httpx.get(f"{stack.nginx.url}/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_audit_events_name_the_client_and_nginx_request_id(stack: Stack) -> None:
    """Through nginx: the audit row has the client address nginx forwards (a hop in
    front of nginx included) and nginx's request id, which the answer carries too."""
    headers = {**basic("admin", ADMIN_PASSWORD), "X-Forwarded-For": "198.51.100.7"}
    data = os.urandom(1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=stack.nginx.url, headers=headers) as client:
        r = client.post(
            "/v2/admin/audited/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers={"X-Request-ID": "chosen-by-the-client"},
        )
        assert r.status_code == 201, r.text
        request_id = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id  # nginx's, not ours
        found = client.get("/api/v1/audit", params={"action": "push", "namespace": "admin"}).json()[
            "events"
        ]
    (pushed,) = [e for e in found if e["target"]["digest"] == digest]
    assert pushed["request"]["addr"] == "198.51.100.7"
    assert pushed["request"]["id"] == request_id
    assert pushed["actor"] == {"name": "admin", "kind": "user", "token": None}


def test_two_replicas_deliver_each_webhook_event_once_in_order(stack: Stack) -> None:
    receiver = Receiver()
    auth = basic("admin", ADMIN_PASSWORD)
    try:
        with httpx.Client(base_url=stack.nginx.url, headers=auth) as client:
            r = client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["blob"]})
            assert r.status_code == 201, r.text
            hook = r.json()
            pushed = []
            for i in range(12):  # round-robin: every other request on each replica
                data = f"replicated {i}".encode()
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                r = client.post(
                    "/v2/admin/hooked/blobs/uploads/", params={"digest": digest}, content=data
                )
                assert r.status_code == 201
                pushed.append(digest)
            deadline = time.monotonic() + 30
            while len(receiver.accepted()) < len(pushed) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.5)  # a second send would come within a poll
            attempts = client.get(
                f"/api/v1/webhooks/{hook['id']}/attempts", params={"n": 100}
            ).json()["attempts"]
            client.delete(f"/api/v1/webhooks/{hook['id']}")
        events = [r.event for r in receiver.received]
        assert [e["target"]["digest"] for e in events] == pushed
        assert len({e["id"] for e in events}) == len(pushed)
        assert all(r.signed_with(hook["secret"]) for r in receiver.received)
        assert len(attempts) == len(pushed)
    finally:
        receiver.close()
