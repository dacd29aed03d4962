"""Images made without internet: layers as tar files, written as a docker-archive (for
`docker load`) or an OCI image layout (for skopeo), with exact digests known."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.e2e.conftest import Docker


def layer_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    layers: list[bytes]
    config: bytes

    @property
    def id(self) -> str:
        return sha256(self.config)


CREATED = "2026-11-30T12:00:00Z"


def make_image(layers: list[bytes], architecture: str = "amd64") -> Image:
    config = {
        "created": CREATED,
        "architecture": architecture,
        "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }
    return Image(layers, json.dumps(config, sort_keys=True).encode())


def write_docker_archive(image: Image, tag: str, path: Path) -> Path:
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        names = []
        for i, layer in enumerate(image.layers):
            names.append(f"layer{i}/layer.tar")
            add(names[-1], layer)
        add("config.json", image.config)
        add(
            "manifest.json",
            json.dumps([{"Config": "config.json", "RepoTags": [tag], "Layers": names}]).encode(),
        )
    return path


def write_oci_layout(images: dict[str, Image], tag: str, root: Path) -> str:
    """An OCI layout whose `tag` is an index over one image per architecture; returns
    the index digest. Layers are gzipped: clients compress plain tar layers on push,
    which would change every digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    children = []
    for arch, image in images.items():
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put(image.config),
                "size": len(image.config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": put(gz),
                    "size": len(gz),
                }
                for gz in (gzip.compress(layer, mtime=0) for layer in image.layers)
            ],
        }
        body = json.dumps(manifest).encode()
        children.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put(body),
                "size": len(body),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        }
    ).encode()
    index_digest = put(index)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "digest": index_digest,
                        "size": len(index),
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            }
        )
    )
    return index_digest


def load_image(
    docker: Docker, tmp_path: Path, busybox: bytes, tag: str, salt: str, size: int = 2 * 1024**2
) -> str:
    """Load a three-layer image under `tag` into the daemon, the last layer `size` bytes
    of random data; returns its image ID."""
    image = make_image(
        [
            layer_tar({"bin/busybox": busybox}),
            layer_tar({"etc/motd": f"hello {salt}\n".encode()}),
            layer_tar({"data/blob": os.urandom(size)}),
        ]
    )
    archive = write_docker_archive(image, tag, tmp_path / f"{salt}.tar")
    docker.run("load", "-i", str(archive))
    return image.id


def image_id(docker: Docker, ref: str) -> str:
    return docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def push_layers(
    client: httpx.Client, repo: str, tag: str, layers: list[bytes], config: bytes | None = None
) -> tuple[str, int]:
    """An OCI image of these layers pushed to this registry (monolithic blob POSTs);
    its manifest's digest and the bytes of its blobs. Without `config`, a minimal one
    (which a Docker daemon would not pull: it names no layers)."""
    if config is None:
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "repo": repo, "tag": tag}
        ).encode()
    blobs = [config, *layers]
    for blob in blobs:
        r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
        assert r.status_code == 201, r.text
    kinds = ["application/vnd.oci.image.config.v1+json"]
    kinds += ["application/vnd.oci.image.layer.v1.tar"] * len(layers)
    described = [
        {"mediaType": kind, "digest": sha256(blob), "size": len(blob)}
        for kind, blob in zip(kinds, blobs, strict=True)
    ]
    oci = "application/vnd.oci.image.manifest.v1+json"
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": oci, "config": described[0], "layers": described[1:]}
    ).encode()
    r = client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": oci})
    assert r.status_code == 201, r.text
    return sha256(body), sum(map(len, blobs))
