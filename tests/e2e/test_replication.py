"""Replication by real `registry serve` processes (issue 34): a copy whose process is
killed with SIGKILL is finished by the next one, from where the remote's upload stood;
two replicas on one PostgreSQL with an event-triggered rule copy every push once."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.images import layer_tar, make_image, push_layers, write_oci_layout
from tests.peers.distribution import Distribution
from tests.peers.postgres import PostgresServer
from tests.peers.registry import RegistryProcess
from tests.peers.tls import self_signed
from tests.peers.tools import until

PASSWORD = "replication admin"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
Skopeo = Callable[..., subprocess.CompletedProcess[str]]
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
    return push_layers(client, repo, tag, [layer])[0]


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


def _referrer(client: httpx.Client, repo: str, subject: str, size: int, tag: str) -> str:
    """A signature-like artifact that refers to `subject`, pushed under `tag` (a cosign
    tag) or by digest (tag empty: found by the referrers API)."""
    config = b"{}"
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(config)}, content=config)
    if r.status_code == 202:  # Distribution: no monolithic POST
        location = httpx.URL(str(client.base_url)).join(r.headers["location"])
        r = client.put(location.copy_merge_params({"digest": sha256(config)}), content=config)
    assert r.status_code == 201, r.text
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [],
            "subject": {"mediaType": OCI_INDEX, "digest": subject, "size": size},
        }
    ).encode()
    r = client.put(
        f"/v2/{repo}/manifests/{tag or sha256(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    return sha256(body)


def test_pull_rules_bring_a_skopeo_index_and_its_signatures_from_both_kinds_of_remote(
    tmp_path: Path, distribution: Distribution, skopeo: Skopeo
) -> None:
    """From Distribution (signature as cosign's tag) and from another instance of this
    registry with token auth (signature by the referrers API): every platform, every
    layer, the signature, the tag."""
    images = {
        arch: make_image([layer_tar({"arch": arch.encode()}), layer_tar({"same": b"x"})], arch)
        for arch in ("amd64", "arm64")
    }
    source = tmp_path / "layout"
    index = write_oci_layout(images, "v1", source)
    size = len((source / "blobs" / "sha256" / index.split(":")[1]).read_bytes())
    other = RegistryProcess(tmp_path / "other", ENV).start()
    here = RegistryProcess(tmp_path / "here", ENV).start()
    try:
        creds = f"admin:{PASSWORD}"
        for target, extra in ((distribution.host, []), (other.host, ["--dest-creds", creds])):
            skopeo(
                "copy", "--all", "--dest-tls-verify=false", *extra,
                f"oci:{source}:v1", f"docker://{target}/vendor/multi:v1",
            )  # fmt: skip
        with httpx.Client(base_url=distribution.url) as client:
            cosign = _referrer(
                client, "vendor/multi", index, size, index.replace(":", "-") + ".sig"
            )
        with admin(other) as client:
            referrer = _referrer(client, "vendor/multi", index, size, "")
        with admin(here) as client:
            remotes = [
                {"name": "dist", "url": distribution.url},
                {"name": "other", "url": other.url, "username": "admin", "password": PASSWORD},
            ]
            for remote in remotes:
                r = client.post("/api/v1/remotes", json=remote)
                assert r.status_code == 201, r.text
                rule = {
                    "name": f"from-{remote['name']}",
                    "direction": "pull",
                    "remote": remote["name"],
                    "repositories": ["vendor/multi"],
                    "destination": f"mirror/{remote['name']}",
                }
                assert client.post("/api/v1/replication/rules", json=rule).status_code == 201
                run = client.post(f"/api/v1/replication/rules/{rule['name']}/run").json()["run"]

                def ended(run: int = run) -> dict[str, Any] | None:
                    found: dict[str, Any] = client.get(f"/api/v1/replication/runs/{run}").json()
                    return found if found["state"] not in ("planning", "running") else None

                found = until(ended)
                assert found["state"] == "succeeded" and found["items"]["copied"] == 1, found
            referrers = client.get(f"/v2/mirror/other/vendor/multi/referrers/{index}").json()
            assert [m["digest"] for m in referrers["manifests"]] == [referrer]
            tag = index.replace(":", "-") + ".sig"
            r = client.head(
                f"/v2/mirror/dist/vendor/multi/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
            )
            assert r.headers["docker-content-digest"] == cosign
        # Each copy is whole: skopeo takes every platform out of it again.
        for name in ("dist", "other"):
            out = tmp_path / f"out-{name}"
            skopeo(
                "copy", "--all", "--src-tls-verify=false", "--src-creds", creds,
                f"docker://{here.host}/mirror/{name}/vendor/multi:v1", f"oci:{out}:v1",
            )  # fmt: skip
            copied = json.loads((out / "index.json").read_text())["manifests"][0]["digest"]
            assert copied == index
    finally:
        here.stop()
        other.stop()


def test_refused_credentials_and_a_certificate_that_changed_fail_items_with_the_reason(
    tmp_path: Path,
) -> None:
    """Both remotes answered when they were made (TLS checked against the CA given); then
    the remote's password changes, and the other's certificate: each item fails, with
    what went wrong in words, after its attempts."""
    cert, key = self_signed(tmp_path / "tls")
    (tmp_path / "dist").mkdir()
    secure = Distribution(tmp_path / "dist", (cert, key)).start()
    other = RegistryProcess(tmp_path / "other", ENV).start()
    here = RegistryProcess(tmp_path / "here", {**ENV, "REGISTRY_REPLICATION_ATTEMPTS": "2"})
    here.start()
    try:
        with admin(here) as client:
            push(client, "team/app", "v1", b"a layer")
            remotes = [
                {"name": "tls", "url": secure.url, "ca_pem": cert.read_text()},
                {"name": "other", "url": other.url, "username": "admin", "password": PASSWORD},
            ]
            for remote in remotes:
                r = client.post("/api/v1/remotes", json=remote)
                assert r.status_code == 201, r.text
                rule = {"name": remote["name"], "direction": "push", "remote": remote["name"]}
                assert client.post("/api/v1/replication/rules", json=rule).status_code == 201

            def run(rule: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
                ident = client.post(f"/api/v1/replication/rules/{rule}/run").json()["run"]

                def ended() -> dict[str, Any] | None:
                    found: dict[str, Any] = client.get(f"/api/v1/replication/runs/{ident}").json()
                    return found if found["state"] not in ("planning", "running") else None

                found = until(ended)
                items = client.get(f"/api/v1/replication/runs/{ident}/items").json()["items"]
                return found, items

            found, _ = run("tls")
            assert found["state"] == "succeeded", found  # over TLS, with the CA given
            # Another certificate, which the CA given does not vouch for.
            secure.stop()
            self_signed(tmp_path / "tls")
            secure.start()
            push(client, "team/app", "v2", b"another layer")
            found, items = run("tls")
            assert found["state"] == "failed", found
            assert any("CERTIFICATE_VERIFY_FAILED" in (i["error"] or "") for i in items), items
            with admin(other) as there:
                r = there.patch("/api/v1/users/admin", json={"password": "changed meanwhile"})
                assert r.status_code == 204, r.text
            found, items = run("other")
            assert found["state"] == "failed", found
            errors = {i["error"] for i in items}
            assert errors == {f"{other.url} refused the credentials of 'admin' (HTTP 401)"}, errors
            assert {i["attempts"] for i in items} == {2}
    finally:
        here.stop()
        other.stop()
        secure.stop()
