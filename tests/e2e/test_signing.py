"""Signatures made by the real clients (issue 35): cosign 2.5 and skopeo 1.18 sign
images in a `registry serve`, which decides when each signature arrives whether a key
its namespace trusts made it; podman 5's sigstoreSigned policy decides the same images
the same way; a Docker daemon pulls a signed image under an enforce policy and is
refused an unsigned one with the registry's message; two replicas see a key added or
removed on either at the next request."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Docker
from tests.e2e.images import layer_tar, make_image, push_layers
from tests.peers.postgres import PostgresServer
from tests.peers.registry import RegistryProcess
from tests.peers.tools import until
from tests.peers.trixie import PASSWORD as KEY_PASSWORD
from tests.peers.trixie import Trixie

PASSWORD = "signing admin"
ENV = {
    "REGISTRY_AUTH_ENABLED": "true",
    "REGISTRY_ADMIN_PASSWORD": PASSWORD,
}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# cosign writes no transparency-log entry here (there is no Rekor to reach), and talks
# plain HTTP to the test server.
COSIGN_LOCAL = ("--allow-http-registry", "--allow-insecure-registry", "--tlog-upload=false")


def admin(server: RegistryProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=("admin", PASSWORD), timeout=30)


def reader(server: RegistryProcess) -> httpx.Client:
    """A member of team who may pull only: the one a signature policy protects (who may
    push reads unsigned images, to sign them)."""
    return httpx.Client(base_url=server.url, auth=("puller", PASSWORD), timeout=30)


def add_reader(client: httpx.Client) -> None:
    r = client.post("/api/v1/users", json={"name": "puller", "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = client.put("/api/v1/namespaces/team/members/puller", json={"role": "guest"})
    assert r.status_code in (200, 201, 204), r.text


def push(client: httpx.Client, repo: str, tag: str) -> str:
    """A Docker-pullable image of its own content; its digest."""
    image = make_image([layer_tar({f"etc/{tag}": f"{repo}:{tag}".encode()})])
    return push_layers(client, repo, tag, image.layers, image.config)[0]


def pulled(client: httpx.Client, repo: str, reference: str) -> int:
    r = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
    return r.status_code


def set_policy(client: httpx.Client, namespace: str, policy: str) -> None:
    r = client.patch(f"/api/v1/namespaces/{namespace}/policy", json={"signature_policy": policy})
    assert r.status_code == 200, r.text


def trust(client: httpx.Client, namespace: str, name: str, pem: str) -> None:
    r = client.post(f"/api/v1/namespaces/{namespace}/trust/keys", json={"name": name, "pem": pem})
    assert r.status_code == 201, r.text


@pytest.fixture
def trixie(tmp_path: Path) -> Trixie:
    return Trixie(tmp_path / "work")


def log_in(trixie: Trixie, host: str) -> None:
    """cosign finds its credentials where docker keeps them."""
    auth = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    config = trixie.home / ".docker" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"auths": {host: {"auth": auth}}}))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryProcess]:
    process = RegistryProcess(tmp_path / "data", ENV).start()
    yield process
    process.stop()


def test_what_the_registry_accepts_podman_accepts_and_docker_is_refused_the_rest(
    server: RegistryProcess, trixie: Trixie, docker: Docker, tmp_path: Path
) -> None:
    host = server.host
    log_in(trixie, host)
    trixie.attachments(host)
    ours, ours_pem = trixie.key_pair("ours")
    other, _ = trixie.key_pair("other")
    gone, gone_pem = trixie.key_pair("gone")
    (trixie.work / "password").write_text(KEY_PASSWORD)
    with admin(server) as client:
        digests = {tag: push(client, "team/app", tag) for tag in ("cosigned", "unsigned")}
        for tag in ("referrer", "other", "gone", "source"):
            digests[tag] = push(client, "team/app", tag)
        trust(client, "team", "ours", ours_pem)
        trust(client, "team", "gone", gone_pem)
        add_reader(client)

        def sign(key: Path, tag: str, *extra: str) -> None:
            trixie.cosign(
                "sign", "--key", str(key), *COSIGN_LOCAL, "--yes", *extra,
                f"{host}/team/app@{digests[tag]}", experimental=bool(extra),
            )  # fmt: skip

        sign(ours, "cosigned")  # the .sig tag
        sign(ours, "referrer", "--registry-referrers-mode=oci-1-1")  # an OCI 1.1 referrer
        sign(other, "other")
        sign(gone, "gone")
        assert client.delete("/api/v1/namespaces/team/trust/keys/gone").status_code == 204
        # skopeo signs as containers/image does, while it copies.
        trixie.skopeo(
            "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
            "--src-creds", f"admin:{PASSWORD}", "--dest-creds", f"admin:{PASSWORD}",
            "--sign-by-sigstore-private-key", str(ours),
            "--sign-passphrase-file", str(trixie.work / "password"),
            f"docker://{host}/team/app:source", f"docker://{host}/team/app:skopeo",
        )  # fmt: skip
        # A signed image copied with its signature to another repository: the payload
        # names team/app, so it vouches for nothing in team/copy.
        trixie.skopeo(
            "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
            "--src-creds", f"admin:{PASSWORD}", "--dest-creds", f"admin:{PASSWORD}",
            f"docker://{host}/team/app:cosigned", f"docker://{host}/team/copy:cosigned",
        )  # fmt: skip
        tags = client.get("/v2/team/copy/tags/list").json()["tags"]
        assert any(tag.endswith(".sig") for tag in tags)  # the signature came along

        cases = {
            "team/app:cosigned": True,
            "team/app:skopeo": True,
            "team/app:unsigned": False,
            "team/app:other": False,  # another key
            "team/app:gone": False,  # its key removed after it signed
            "team/copy:cosigned": False,  # another repository's reference
        }
        set_policy(client, "team", "enforce")
        # cosign's referrers form counts too (containers/image reads only the .sig tags,
        # so podman is not asked about it below).
        expected = {**cases, "team/app:referrer": True}
        with reader(server) as puller:
            decided = {case: pulled(puller, *case.split(":")) == 200 for case in expected}
        assert decided == expected

        # podman decides the same images under a policy that trusts the same key (the
        # registry's own policy off, so that podman sees each image and judges it).
        set_policy(client, "team", "off")
        pub = trixie.work / "ours" / "cosign.pub"
        policy = {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    f"{host}/team": [
                        {
                            "type": "sigstoreSigned",
                            "keyPath": str(pub),
                            "signedIdentity": {"type": "matchRepository"},
                        }
                    ]
                }
            },
        }
        for case, accepted in cases.items():
            refusal = trixie.podman_pull(f"{host}/{case}", policy, f"admin:{PASSWORD}")
            assert (refusal == "") == accepted, (case, refusal)

        # A Docker daemon under enforce: the signed image pulls, the unsigned one is
        # refused with the registry's message.
        set_policy(client, "team", "enforce")
    config = tmp_path / "docker-config"
    config.mkdir()
    docker.run("login", "-u", "puller", "--password-stdin", host, stdin=PASSWORD, config=config)
    docker.run("pull", f"{host}/team/app:cosigned", config=config)
    refused = docker.run("pull", f"{host}/team/app:unsigned", config=config, check=False)
    assert refused.returncode != 0
    assert "signed by no key that namespace 'team' trusts" in refused.stderr, refused.stderr
    docker.run("rmi", f"{host}/team/app:cosigned", config=config)


def test_two_replicas_see_a_key_added_or_removed_on_either_at_the_next_request(
    tmp_path: Path, trixie: Trixie, postgres: PostgresServer
) -> None:
    name = f"signing_{random.randrange(10**9)}"
    postgres.execute(f"CREATE DATABASE {name}")
    env = {**ENV, "REGISTRY_DATABASE_URL": postgres.url_for(name)}
    data = tmp_path / "data"
    first = RegistryProcess(data, env).start()
    second = RegistryProcess(data, env).start()
    try:
        key, pem = trixie.key_pair("ours")
        with admin(first) as one:
            digest = push(one, "team/app", "v1")
            set_policy(one, "team", "enforce")
            add_reader(one)
        with admin(first) as one, admin(second) as two, reader(first) as a, reader(second) as b:
            assert pulled(b, "team/app", "v1") == 403
            # A key added on the first; a signature pushed to the second is checked
            # there against it, and the first serves the image at once.
            trust(one, "team", "ours", pem)
            log_in(trixie, second.host)
            trixie.cosign(
                "sign", "--key", str(key), *COSIGN_LOCAL, "--yes",
                f"{second.host}/team/app@{digest}",
            )  # fmt: skip
            assert pulled(a, "team/app", "v1") == 200
            # Removed on the second: refused by the first at the next request.
            assert two.delete("/api/v1/namespaces/team/trust/keys/ours").status_code == 204
            assert pulled(a, "team/app", "v1") == 403
            # Added again on the second: the stored signature is checked again by
            # whichever replica's worker leases the key first.
            trust(two, "team", "ours", pem)
            until(lambda: pulled(a, "team/app", "v1") == 200)
            assert pulled(b, "team/app", "v1") == 200
    finally:
        first.stop()
        second.stop()
        postgres.drop_database(name)
