"""Replication by real `registry serve` processes (issue 34): a copy whose process is
killed with SIGKILL is finished by the next one, from where the remote's upload stood;
two replicas on one PostgreSQL with an event-triggered rule copy every push once."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.peers.distribution import Distribution
from tests.peers.postgres import PostgresServer
from tests.peers.registry import RegistryProcess

PASSWORD = "replication admin"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MIB = 1024 * 1024
ENV = {
    "REGISTRY_AUTH_ENABLED": "true",
    "REGISTRY_ADMIN_PASSWORD": PASSWORD,
    "REGISTRY_REPLICATION_POLL_SECONDS": "0.2",
    "REGISTRY_REPLICATION_LEASE_SECONDS": "2",
    "REGISTRY_REPLICATION_BACKOFF_SECONDS": "0.2",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(client: httpx.Client, repo: str, tag: str, layer: bytes) -> str:
    config = json.dumps({"tag": tag}).encode()
    for blob in (config, layer):
        r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
        assert r.status_code == 201, r.text
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    r = client.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    return sha256(body)


def until(check: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not so after {seconds} s")


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Distribution]:
    (tmp_path / "distribution").mkdir()
    server = Distribution(tmp_path / "distribution").start()
    yield server
    server.stop()


def admin(server: RegistryProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=("admin", PASSWORD), timeout=30)


def test_a_copy_killed_with_sigkill_is_finished_by_the_next_process(
    tmp_path: Path, distribution: Distribution
) -> None:
    env = {**ENV, "REGISTRY_REPLICATION_CHUNK_BYTES": str(256 * 1024)}
    server = RegistryProcess(tmp_path / "data", env).start()
    try:
        with admin(server) as client:
            layer = random.randbytes(6 * MIB)
            digest = push(client, "team/big", "v1", layer)
            r = client.post("/api/v1/remotes", json={"name": "dist", "url": distribution.url})
            assert r.status_code == 201, r.text
            rule = {
                "name": "big",
                "direction": "push",
                "remote": "dist",
                "repositories": ["team/**"],
                "bandwidth": 2 * MIB,  # three seconds: time to kill it midway
            }
            assert client.post("/api/v1/replication/rules", json=rule).status_code == 201
            run = client.post("/api/v1/replication/rules/big/run").json()["run"]
        uploads = "/v2/team/big/blobs/uploads/"
        until(lambda: distribution.requests_under("PATCH", uploads) >= 4)
        server.kill()
        server.start()
        with admin(server) as client:

            def ended() -> dict[str, Any] | None:
                found: dict[str, Any] = client.get(f"/api/v1/replication/runs/{run}").json()
                return found if found["state"] != "running" else None

            found = until(ended)
            assert found["state"] == "succeeded", found
            (item,) = client.get(f"/api/v1/replication/runs/{run}/items").json()["items"]
        # The next process went on in the same upload (one for the layer, one for the
        # config) and sent only what the remote did not have; or, when the kill cut a
        # chunk midway, which Distribution cannot continue from (its session records
        # the offset it expects), in one new upload.
        sessions = distribution.requests_under("POST", uploads)
        assert sessions in (2, 3)
        if sessions == 2:
            assert 0 < item["bytes"] < len(layer), item
        r = httpx.head(
            f"{distribution.url}/v2/team/big/manifests/v1", headers={"Accept": OCI_MANIFEST}
        )
        assert r.headers["docker-content-digest"] == digest
        blob = httpx.get(f"{distribution.url}/v2/team/big/blobs/{sha256(layer)}")
        assert sha256(blob.content) == sha256(layer)
    finally:
        server.stop()


def test_two_replicas_with_an_event_rule_copy_every_push_once(
    tmp_path: Path, distribution: Distribution, postgres: PostgresServer
) -> None:
    name = f"replicas_{random.randrange(10**9)}"
    postgres.execute(f"CREATE DATABASE {name}")
    env = {**ENV, "REGISTRY_DATABASE_URL": postgres.url_for(name)}
    data = tmp_path / "data"
    replicas = [RegistryProcess(data, env).start()]
    replicas.append(RegistryProcess(data, env).start())
    try:
        with admin(replicas[0]) as client:
            r = client.post("/api/v1/remotes", json={"name": "dist", "url": distribution.url})
            assert r.status_code == 201, r.text
            rule = {
                "name": "follow",
                "direction": "push",
                "remote": "dist",
                "repositories": ["team/**"],
                "trigger": "event",
            }
            assert client.post("/api/v1/replication/rules", json=rule).status_code == 201
        pushed = {}
        clients = [admin(replica) for replica in replicas]
        for n in range(12):
            tag = f"v{n}"
            pushed[tag] = push(clients[n % 2], "team/app", tag, f"layer {n}".encode())
        for client in clients:
            client.close()

        def copied() -> bool:
            tags = httpx.get(f"{distribution.url}/v2/team/app/tags/list").json().get("tags")
            return sorted(tags or []) == sorted(pushed)

        until(copied)
        for tag, digest in pushed.items():
            r = httpx.head(
                f"{distribution.url}/v2/team/app/manifests/{tag}",
                headers={"Accept": OCI_MANIFEST},
            )
            assert r.headers["docker-content-digest"] == digest
            # Once: one tag PUT each, whichever replica copied it.
            assert distribution.requests("PUT", f"/v2/team/app/manifests/{tag}") == 1, tag
        with admin(replicas[1]) as client:
            runs = client.get("/api/v1/replication/runs").json()["runs"]
            assert {r["state"] for r in runs} == {"succeeded"}
            assert sum(r["items"]["copied"] for r in runs) == len(pushed)
            assert sum(r["items"]["failed"] for r in runs) == 0
    finally:
        for replica in replicas:
            replica.stop()
        postgres.drop_database(name)
