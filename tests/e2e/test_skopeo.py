"""skopeo copies a two-platform OCI index in and out, inspects, lists tags, deletes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from registry.mediatypes import OCI_INDEX
from tests.e2e.conftest import RegistryProcess, store_environment
from tests.e2e.images import CREATED, layer_tar, make_image, write_oci_layout

Skopeo = Callable[..., CompletedProcess[str]]


def test_copy_all_inspect_list_delete(
    skopeo: Skopeo, registry_process: RegistryProcess, tmp_path: Path
) -> None:
    images = {
        arch: make_image(
            [layer_tar({"arch": arch.encode()}), layer_tar({"common": b"shared layer"})], arch
        )
        for arch in ("amd64", "arm64")
    }
    source = tmp_path / "source"
    index_digest = write_oci_layout(images, "v1", source)
    remote = f"docker://{registry_process.host}/team/multi"

    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{source}:v1", f"{remote}:v1")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{source}:v1", f"{remote}:v2")

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{remote}:v1").stdout
    index = json.loads(raw)
    # skopeo re-serialises the index on the way in (same children, compact JSON); what the
    # registry keeps is byte for byte what it got.
    served = registry_process.get("/v2/team/multi/manifests/v1", headers={"Accept": OCI_INDEX})
    pushed_digest = served.headers["Docker-Content-Digest"]
    assert "sha256:" + hashlib.sha256(served.content).hexdigest() == pushed_digest
    assert json.loads(served.content) == index
    assert [m["digest"] for m in index["manifests"]] == [
        m["digest"]
        for m in json.loads((source / "blobs" / "sha256" / index_digest[7:]).read_bytes())[
            "manifests"
        ]
    ]
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
    # The browse API: each platform with its own size, the build time from the configs.
    children = {
        m["digest"]: registry_process.get(
            f"/v2/team/multi/manifests/{m['digest']}", headers={"Accept": m["mediaType"]}
        ).json()
        for m in index["manifests"]
    }
    tags = registry_process.get("/api/v1/repositories/team/multi/-/tags").json()["tags"]
    v1 = next(t for t in tags if t["name"] == "v1")
    sizes = {p["platform"]["architecture"]: (p["digest"], p["bytes"]) for p in v1["platforms"]}
    for m in index["manifests"]:
        child = children[m["digest"]]
        size = child["config"]["size"] + sum(layer["size"] for layer in child["layers"])
        assert sizes[m["platform"]["architecture"]] == (m["digest"], size)
    assert v1["bytes"] == sum(size for _, size in sizes.values())
    assert v1["created"] == CREATED
    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64", f"{remote}:v1").stdout
    )
    assert inspected["Architecture"] == "arm64"
    assert json.loads(skopeo("list-tags", "--tls-verify=false", remote).stdout)["Tags"] == [
        "v1",
        "v2",
    ]

    out = tmp_path / "out"
    skopeo("copy", "--all", "--src-tls-verify=false", f"{remote}:v1", f"oci:{out}:v1")
    copied = json.loads((out / "index.json").read_text())
    assert copied["manifests"][0]["digest"] == pushed_digest
    for child in index["manifests"]:
        assert (out / "blobs" / "sha256" / child["digest"].split(":")[1]).exists()

    skopeo("delete", "--tls-verify=false", f"{remote}:v1")
    assert (
        skopeo("inspect", "--raw", "--tls-verify=false", f"{remote}:v1", check=False).returncode
        != 0
    )
    # Deleting by digest removed the manifest and so every tag on it.
    assert json.loads(skopeo("list-tags", "--tls-verify=false", remote).stdout)["Tags"] == []


@pytest.mark.parametrize("store", ["filesystem", "s3-stream"])
def test_copy_with_credentials(
    skopeo: Skopeo, tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    env = {**store_environment(request, store), "REGISTRY_AUTH_ENABLED": "true"}
    server = RegistryProcess(tmp_path / "data", env).start()
    try:
        server.cli("user", "add", "dana", "--password-stdin", stdin="dana-password\n")
        source = tmp_path / "source"
        write_oci_layout({"amd64": make_image([layer_tar({"a": b"x"})])}, "v1", source)
        remote = f"docker://{server.host}/dana/app:v1"
        tls = "--tls-verify=false"
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "dana:dana-password",
               f"oci:{source}:v1", remote)  # fmt: skip
        listed = skopeo("list-tags", tls, "--creds", "dana:dana-password", remote[:-3]).stdout
        assert json.loads(listed)["Tags"] == ["v1"]
        refused = skopeo("inspect", tls, "--no-creds", remote, check=False)
        assert refused.returncode != 0
        assert "unauthorized" in refused.stderr.lower() or "denied" in refused.stderr.lower()
        wrong = skopeo("inspect", tls, "--creds", "dana:wrong-password", remote, check=False)
        assert wrong.returncode != 0
        assert "401" in wrong.stderr or "unauthorized" in wrong.stderr.lower()
    finally:
        server.stop()
