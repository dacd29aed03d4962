"""The disk fills up under the filesystem store (a small tmpfs as its root): clients get
507 INSUFFICIENT_STORAGE naming the cause, nothing stored before is damaged, no partial
blob is ever visible, and an upload cut short resumes once there is room again."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from registry.app import create_app
from registry.config import Settings
from registry.mediatypes import OCI_MANIFEST
from tests.helpers import assert_error, push_image, session_offset, sha256
from tests.peers.tools import unavailable

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
BIG = os.urandom(4 * MIB)


@pytest.fixture
def storage_env() -> dict[str, str]:
    return {}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs, grown with remount(); root only, as CI runs."""
    root = tmp_path / "storage"
    root.mkdir()
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def remount(root: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(root)], check=True)


@pytest.fixture
async def client(
    make_settings: Callable[..., Settings], small_disk: Path
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(storage_root=str(small_disk)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        yield c
    await app.state.registry.close()


async def test_a_full_disk_loses_nothing_and_the_upload_resumes(
    client: httpx.AsyncClient, small_disk: Path
) -> None:
    before, before_body = await push_image(client, "team/app", "v1", layers=[b"kept" * 60_000])

    r = await client.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    r = await client.patch(location, content=BIG[:MIB], headers={"Content-Range": f"0-{MIB - 1}"})
    assert r.status_code == 202
    r = await client.patch(
        location, content=BIG[MIB:], headers={"Content-Range": f"{MIB}-{len(BIG) - 1}"}
    )
    error = assert_error(r, 507, "INSUFFICIENT_STORAGE")
    assert "No space left on device" in error["message"]

    # A monolithic upload and a manifest fail the same way, leaving nothing behind.
    r = await client.post(
        "/v2/team/app/blobs/uploads/", params={"digest": sha256(BIG)}, content=BIG
    )
    assert_error(r, 507, "INSUFFICIENT_STORAGE")
    assert (await client.head(f"/v2/team/app/blobs/{sha256(BIG)}")).status_code == 404
    assert not [p for p in (small_disk / "uploads").iterdir() if p.name.startswith("put-")]
    r = await client.put(
        "/v2/team/app/manifests/v2",
        content=before_body.replace(b'"schemaVersion": 2', b'"schemaVersion": 2 '),
        headers={"Content-Type": OCI_MANIFEST},
    )
    if r.status_code != 201:  # what room the session's last piece left decides this one
        assert_error(r, 507, "INSUFFICIENT_STORAGE")
        assert_error(await client.get("/v2/team/app/manifests/v2"), 404, "MANIFEST_UNKNOWN")

    # What was there before is whole.
    r = await client.get("/v2/team/app/manifests/v1")
    assert r.content == before_body and r.headers["Docker-Content-Digest"] == before
    layer = b"kept" * 60_000
    assert (await client.get(f"/v2/team/app/blobs/{sha256(layer)}")).content == layer

    # Room again: the session goes on from what it holds, which is a prefix of the data.
    remount(small_disk, "16m")
    status = await client.get(location)
    assert status.status_code == 204
    held = session_offset(status)
    assert MIB <= held < len(BIG)
    r = await client.patch(
        location, content=BIG[held:], headers={"Content-Range": f"{held}-{len(BIG) - 1}"}
    )
    assert r.status_code == 202, r.text
    assert (await client.put(location, params={"digest": sha256(BIG)})).status_code == 201
    assert (await client.get(f"/v2/team/app/blobs/{sha256(BIG)}")).content == BIG
